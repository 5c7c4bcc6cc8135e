import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { startKerf } from "./helpers.ts";

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function tmp(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "kerf-pipe-"));
  dirs.push(dir);
  return dir;
}

/** The reader of the child's stdout goes away before it writes: every write it makes meets EPIPE. */
function withClosedStdout(args: string[]) {
  const k = startKerf(args);
  k.child.stdout.destroy();
  return k;
}

describe("a closed stdout (kerf health | head -1)", () => {
  it("is no error: a short command finishes quietly with its own exit code", async () => {
    const stateDir = await tmp();
    await writeFile(path.join(stateDir, "health.json"), JSON.stringify({ at: new Date().toISOString(), pid: 1, sessions: [], uplink: null, buffer: { items: 0, bytes: 0, droppedItems: 0 } }));
    const healthy = await withClosedStdout(["health", "--state-dir", stateDir]).exited;
    expect(healthy.stderr).toBe("");
    expect(healthy.code).toBe(0);
    const unhealthy = await withClosedStdout(["health", "--state-dir", path.join(stateDir, "none")]).exited;
    expect(unhealthy.stderr).toBe("");
    expect(unhealthy.code).toBe(1);
  });

  it("stops a long-running command as SIGTERM would", async () => {
    const r = await withClosedStdout(["simulate", "--port", "0", "--state-dir", await tmp()]).exited;
    expect(r.stderr).not.toMatch(/EPIPE|Error|\n\s+at /);
    expect(r.signal).toBeNull();
    expect(r.code).toBe(0);
  });
});
