import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { silentLogger } from "../../src/log.ts";
import { Launcher } from "../../src/update/launcher.ts";
import { readJournal, readPointer } from "../../src/update/pointer.ts";
import { makeBundle } from "../helpers/bundle.ts";
import { tempDir, waitFor } from "../helpers/env.ts";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A factory "app" that only stays up until SIGTERM: enough for the launcher's own logic. */
async function setup(healthTimeoutMs: number) {
  const t = await tempDir("kerf-launcher-");
  cleanups.push(t.cleanup);
  const factory = path.join(t.dir, "factory");
  mkdirSync(path.join(factory, "bin"), { recursive: true });
  writeFileSync(path.join(factory, "bin", "kerf.js"), "setInterval(() => {}, 1000);\n");
  const stateDir = path.join(t.dir, "state");
  mkdirSync(stateDir);
  const launcher = new Launcher({ stateDir, configFile: "/unused.yaml", factory: { dir: factory, version: "1.0.0" }, healthTimeoutMs, stopTimeoutMs: 5_000, logger: silentLogger() });
  const done = launcher.run();
  cleanups.push(async () => {
    launcher.stop("test over");
    await done;
  });
  return { dir: t.dir, stateDir, launcher, done };
}

describe("launcher", () => {
  it("a new version that exits at start is rolled back to the previous one, with the reason", async () => {
    const s = await setup(60_000);
    s.launcher.install(makeBundle(path.join(s.dir, "v2"), "2.0.0", { entry: "process.exit(70);\n" }));
    const p = await waitFor("the rollback", () => readPointer(s.stateDir, "1.0.0").lastOutcome?.kind === "rolled-back" && readPointer(s.stateDir, "1.0.0"), 30_000);
    expect(p.active).toEqual({ slot: "factory", version: "1.0.0" });
    expect(p.trial).toBeNull();
    expect(p.lastOutcome).toMatchObject({ version: "2.0.0", reason: expect.stringContaining("exited with code 70") });
    expect(readJournal(s.stateDir).map((l) => l.step)).toEqual(["staging", "staged", "stopped-old", "switched", "started", "rolled-back"]);
  });

  it("a new version that never becomes healthy is rolled back when its time is up", async () => {
    const s = await setup(2_000);
    s.launcher.install(makeBundle(path.join(s.dir, "v2"), "2.0.0", { entry: "setInterval(() => {}, 1000);\n" }));
    const p = await waitFor("the rollback", () => readPointer(s.stateDir, "1.0.0").lastOutcome?.kind === "rolled-back" && readPointer(s.stateDir, "1.0.0"), 30_000);
    expect(p.active.slot).toBe("factory");
    expect(p.lastOutcome?.reason).toContain("did not become healthy within 2 s");
  });
});
