import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { writeFileAtomic } from "../../src/certs/files.ts";
import { silentLogger } from "../../src/log.ts";
import { Launcher } from "../../src/update/launcher.ts";
import { readJournal, readPointer, slotsDir } from "../../src/update/pointer.ts";
import { requestFile } from "../../src/update/request.ts";
import type { StagingWriter } from "../../src/update/slots.ts";
import { makeBundle } from "../helpers/bundle.ts";
import { tempDir, waitFor } from "../helpers/env.ts";

const repo = path.resolve(import.meta.dirname, "../..");
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Stays up until SIGTERM, and leaves its pid and KERF_LAUNCHER in the state dir: enough for the launcher's own logic. */
const IDLE = `const fs = require("node:fs");
const state = process.argv[process.argv.indexOf("--state-dir") + 1];
fs.writeFileSync(state + "/child.json", JSON.stringify({ pid: process.pid, launcher: process.env.KERF_LAUNCHER ?? null }));
setInterval(() => {}, 1000);
`;

/** A factory "app" (the IDLE stub and the repository's package-lock.json) under a Launcher. */
async function setup(healthTimeoutMs: number, options: { writer?: StagingWriter } = {}) {
  const t = await tempDir("kerf-launcher-");
  cleanups.push(t.cleanup);
  const factory = path.join(t.dir, "factory");
  mkdirSync(path.join(factory, "bin"), { recursive: true });
  writeFileSync(path.join(factory, "bin", "kerf.js"), IDLE);
  copyFileSync(path.join(repo, "package-lock.json"), path.join(factory, "package-lock.json"));
  const stateDir = path.join(t.dir, "state");
  mkdirSync(stateDir);
  const launcher = new Launcher({ stateDir, configFile: "/unused.yaml", factory: { dir: factory, version: "1.0.0" }, healthTimeoutMs, stopTimeoutMs: 5_000, requestPollMs: 100, logger: silentLogger(), ...options });
  const done = launcher.run();
  cleanups.push(async () => {
    launcher.stop("test over");
    await done;
  });
  const child = () => {
    try {
      return JSON.parse(readFileSync(path.join(stateDir, "child.json"), "utf8")) as { pid: number; launcher: string | null };
    } catch {
      return undefined;
    }
  };
  await waitFor("the factory child", child);
  return { dir: t.dir, stateDir, launcher, done, child: () => child()! };
}

function request(stateDir: string, r: object): void {
  mkdirSync(path.dirname(requestFile(stateDir)), { recursive: true });
  writeFileAtomic(requestFile(stateDir), JSON.stringify(r), 0o600);
}

const outcome = (stateDir: string, kind: string, version: string) => () => {
  const p = readPointer(stateDir, "1.0.0");
  return p.lastOutcome?.kind === kind && p.lastOutcome.version === version && p;
};

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe("launcher", () => {
  it("starts its child with KERF_LAUNCHER=1", async () => {
    const s = await setup(60_000);
    expect(s.child().launcher).toBe("1");
  });

  it("a new version that exits at start is rolled back to the previous one, with the reason, and not installed again", async () => {
    const s = await setup(60_000);
    const v2 = makeBundle(path.join(s.dir, "v2"), "2.0.0", { entry: "process.exit(70);\n" });
    request(s.stateDir, { ...v2, sha256: "a".repeat(64), requestedAt: new Date().toISOString() });
    const p = await waitFor("the rollback", outcome(s.stateDir, "rolled-back", "2.0.0"), 30_000);
    expect(p.active).toEqual({ slot: "factory", version: "1.0.0" });
    expect(p.trial).toBeNull();
    expect(p.failed).toEqual(["2.0.0"]);
    expect(p.lastOutcome).toMatchObject({ version: "2.0.0", reason: expect.stringContaining("exited with code 70") });
    expect(existsSync(requestFile(s.stateDir))).toBe(false);
    expect(readJournal(s.stateDir).map((l) => l.step)).toEqual(["staging", "staged", "stopped-old", "switched", "started", "rolling-back", "rolled-back"]);

    request(s.stateDir, { ...v2, sha256: "a".repeat(64), requestedAt: new Date().toISOString() });
    const again = await waitFor("the refusal", outcome(s.stateDir, "failed", "2.0.0"), 30_000);
    expect(again.lastOutcome?.reason).toContain("rolled back before");
    expect(readJournal(s.stateDir).at(-1)).toMatchObject({ step: "refused", version: "2.0.0" });
  });

  it("a new version that never becomes healthy is rolled back when its time is up", async () => {
    const s = await setup(2_000);
    s.launcher.install(makeBundle(path.join(s.dir, "v2"), "2.0.0", { entry: "setInterval(() => {}, 1000);\n" }));
    const p = await waitFor("the rollback", outcome(s.stateDir, "rolled-back", "2.0.0"), 30_000);
    expect(p.active.slot).toBe("factory");
    expect(p.lastOutcome?.reason).toContain("did not become healthy within 2 s");
  });

  it("refuses a malformed request, a version not above the active one and a bundle for other dependencies; the running version stays", async () => {
    const s = await setup(60_000);
    const first = s.child().pid;
    const cases: [object, string, string][] = [
      [{ version: "2.0", dir: s.dir, sha256: "a".repeat(64), requestedAt: new Date().toISOString() }, "2.0", "version is \"2.0\", expected MAJOR.MINOR.PATCH"],
      [{ version: "2.0.0", dir: "relative/dir", sha256: "a".repeat(64), requestedAt: new Date().toISOString() }, "2.0.0", "dir is \"relative/dir\", expected an absolute path"],
      [{ ...makeBundle(path.join(s.dir, "old"), "0.9.0"), sha256: "a".repeat(64), requestedAt: new Date().toISOString() }, "0.9.0", "not above the active version 1.0.0"],
      [{ ...makeBundle(path.join(s.dir, "same"), "1.0.0"), sha256: "a".repeat(64), requestedAt: new Date().toISOString() }, "1.0.0", "not above the active version 1.0.0"],
      [{ ...makeBundle(path.join(s.dir, "deps"), "3.0.0", { lockSha256: "0".repeat(64) }), sha256: "a".repeat(64), requestedAt: new Date().toISOString() }, "3.0.0", "needs a new image"],
    ];
    for (const [r, version, reason] of cases) {
      request(s.stateDir, r);
      const p = await waitFor(`the refusal of ${version}`, outcome(s.stateDir, "failed", version), 30_000);
      expect(p.lastOutcome?.reason).toContain(reason);
    }
    writeFileSync(requestFile(s.stateDir), "{not json");
    const p = await waitFor("the refusal of broken JSON", outcome(s.stateDir, "failed", "unknown"), 30_000);
    expect(p.lastOutcome?.reason).toContain("is not JSON");
    expect(p.active).toEqual({ slot: "factory", version: "1.0.0" });
    expect(readJournal(s.stateDir).map((l) => l.step)).toEqual(Array(6).fill("refused"));
    expect(s.child().pid).toBe(first);
    expect(alive(first)).toBe(true);
  });

  it("a full disk while staging fails cleanly: no staging folder, the running version keeps running", async () => {
    let files = 0;
    const full: StagingWriter = {
      copyFile(from, to) {
        if (++files > 20) throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
        copyFileSync(from, to);
      },
    };
    const s = await setup(60_000, { writer: full });
    const first = s.child().pid;
    s.launcher.install(makeBundle(path.join(s.dir, "v2"), "2.0.0"));
    const p = await waitFor("the failure", outcome(s.stateDir, "failed", "2.0.0"), 30_000);
    expect(p.lastOutcome?.reason).toContain("no space left on the state volume (ENOSPC)");
    expect(p.active).toEqual({ slot: "factory", version: "1.0.0" });
    expect(readJournal(s.stateDir).map((l) => l.step)).toEqual(["staging", "staging-failed"]);
    expect(readdirSync(slotsDir(s.stateDir))).toEqual([]);
    expect(s.child().pid).toBe(first);
    expect(alive(first)).toBe(true);
  });

  it("a stop while a bundle is being staged stops the running child at once, not after the copy", async () => {
    let copies = 0;
    const pause = new Int32Array(new SharedArrayBuffer(4));
    // a slow disk: each file takes 20 ms
    const slow: StagingWriter = {
      copyFile(from, to) {
        copies++;
        Atomics.wait(pause, 0, 0, 20);
        copyFileSync(from, to);
      },
    };
    const s = await setup(60_000, { writer: slow });
    const first = s.child().pid;
    s.launcher.install(makeBundle(path.join(s.dir, "v2"), "2.0.0"));
    await waitFor("the staging under way", () => copies >= 5, 30_000, 10);
    s.launcher.stop("SIGTERM");
    await waitFor("the child stopped", () => !alive(first), 30_000, 10);
    expect(readJournal(s.stateDir).map((l) => l.step), "the child was stopped only after the copy").toEqual(["staging"]);
    await s.done;
  });

  it("a stop while a new version is on trial stops it and exits; the trial goes on at the next start", async () => {
    const s = await setup(60_000);
    const first = s.child().pid;
    // the IDLE stub as an ES module, as the bundle's package.json says
    s.launcher.install(makeBundle(path.join(s.dir, "v2"), "2.0.0", { entry: `import { createRequire } from "node:module";\nconst require = createRequire(import.meta.url);\n${IDLE}` }));
    const trial = await waitFor("v2's child on trial", () => readPointer(s.stateDir, "1.0.0").trial !== null && s.child().pid !== first && s.child().pid, 30_000);
    s.launcher.stop("SIGTERM");
    await s.done;
    expect(alive(trial)).toBe(false);
    const p = readPointer(s.stateDir, "1.0.0");
    expect(p.active.version).toBe("2.0.0");
    expect(p.trial).not.toBeNull();
    expect(p.lastOutcome).toBeNull();
  });
});
