import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { takeLauncherLock } from "../../src/update/lock.ts";
import { appDir } from "../../src/update/pointer.ts";
import { tempDir } from "../helpers/env.ts";
import { kerf } from "./helpers.ts";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function dirs(configText = "instance: x\n") {
  const t = await tempDir("kerf-launch-");
  cleanups.push(t.cleanup);
  const config = path.join(t.dir, "kerf.yaml");
  writeFileSync(config, configText);
  const state = path.join(t.dir, "state");
  return { config, state };
}

describe("kerf launch", () => {
  it("refuses to run beside another launcher of the same state directory", async () => {
    const d = await dirs();
    mkdirSync(appDir(d.state), { recursive: true });
    // this test's own process is the live holder
    writeFileSync(path.join(appDir(d.state), "launcher.lock"), `${process.pid}\n`);
    const r = await kerf(["launch", "--config", d.config, "--state-dir", d.state]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`another kerf launch (pid ${process.pid}) runs for the state directory ${d.state}`);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(readFileSync(path.join(appDir(d.state), "launcher.lock"), "utf8")).toBe(`${process.pid}\n`);
  });

  it("takes over the lock of a launcher that is gone", async () => {
    const d = await dirs();
    const gone = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
    mkdirSync(appDir(d.state), { recursive: true });
    writeFileSync(path.join(appDir(d.state), "launcher.lock"), `${gone.stdout}\n`);
    const lock = takeLauncherLock(d.state);
    expect(readFileSync(path.join(appDir(d.state), "launcher.lock"), "utf8")).toBe(`${process.pid}\n`);
    lock.release();
  });

  it("names the file, line and field of a bad update.healthTimeoutSeconds", async () => {
    const d = await dirs("instance: x\nupdate:\n  healthTimeoutSeconds: 2\n");
    const r = await kerf(["launch", "--config", d.config, "--state-dir", d.state]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${d.config}:3: update.healthTimeoutSeconds is 2, expected whole seconds from 5 to 3600`);
  });
});
