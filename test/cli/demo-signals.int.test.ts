import { existsSync, readdirSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { setupDemo } from "../../src/demo/setup.ts";
import { silentLogger } from "../../src/log.ts";
import { tempDir } from "../helpers/env.ts";
import { startKerf, type Running } from "./helpers.ts";

const cleanups: (() => Promise<void>)[] = [];

/** What is left in the temporary folder, less Node's compile cache (bin/kerf.js keeps it there on purpose, for the next start). */
function leftBehind(tmp: string): string[] {
  return readdirSync(tmp).filter((name) => name !== "node-compile-cache");
}
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** `kerf demo` with its temporary directory in a folder of the test's own, to see what it leaves. */
async function demo(): Promise<{ k: Running; tmp: string; stateDir: string }> {
  const tmp = await tempDir("kerf-demo-signals-");
  cleanups.push(tmp.cleanup);
  const k = startKerf(["demo"], { ...process.env, TMPDIR: tmp.dir });
  cleanups.push(async () => {
    if (k.child.exitCode === null && k.child.signalCode === null) k.child.kill("SIGKILL");
    await k.exited;
  });
  const [, stateDir] = await k.waitFor(/^demo: starting in (\S+)/m);
  expect(stateDir!.startsWith(tmp.dir)).toBe(true);
  return { k, tmp: tmp.dir, stateDir: stateDir! };
}

describe("kerf demo and Ctrl-C", () => {
  it("during setup: stops what setup had started, removes its directory, says so, exits 130", async () => {
    const { k, tmp, stateDir } = await demo();
    k.child.kill("SIGINT");
    const r = await k.exited;
    expect(r.stderr).toMatch(/^demo: stopped the devcloud \(https:\/\/127\.0\.0\.1:\d+\)$/m);
    expect(r.stderr).toMatch(/^demo: stopped by SIGINT during setup$/m);
    expect(r.stderr).toContain(`demo: removed ${stateDir}\n`);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.code).toBe(130);
    expect(existsSync(stateDir)).toBe(false);
    expect(leftBehind(tmp)).toEqual([]);
  });

  it("after setup: stops the connector, the simulator and the devcloud, prints the summary, removes its directory", async () => {
    const { k, tmp, stateDir } = await demo();
    await k.waitFor(/^ack {2}demo-saw {2}/m);
    k.child.kill("SIGINT");
    const r = await k.exited;
    const summary = JSON.parse(r.stdout.trimEnd().split("\n").at(-1)!) as { acknowledged: number; dropped: number };
    expect(summary.acknowledged).toBeGreaterThan(0);
    expect(summary.dropped).toBe(0);
    const notes = r.stderr.split("\n").filter((l) => l.startsWith("demo: stop") || l.startsWith("demo: removed"));
    expect(notes).toEqual([
      "demo: stopping (SIGINT)",
      "demo: stopped the connector",
      expect.stringMatching(/^demo: stopped the simulator \(opc\.tcp:\/\/127\.0\.0\.1:\d+\)$/),
      expect.stringMatching(/^demo: stopped the devcloud \(https:\/\/127\.0\.0\.1:\d+\)$/),
      `demo: removed ${stateDir}`,
    ]);
    expect(r.code).toBe(0);
    expect(leftBehind(tmp)).toEqual([]);
  });
});

describe("setupDemo aborted", () => {
  it("stops exactly what it had started by then, newest first, and throws the reason", async () => {
    for (const when of ["at once", "after the simulator"] as const) {
      const tmp = await tempDir();
      cleanups.push(tmp.cleanup);
      const aborter = new AbortController();
      const stopped: string[] = [];
      const setup = setupDemo({
        stateDir: tmp.dir,
        logger: silentLogger(),
        signal: aborter.signal,
        stopped: (what) => stopped.push(what),
        // the first line comes once the simulator runs and trusts the connector
        out: () => when === "after the simulator" && aborter.abort(new Error("test abort")),
      });
      if (when === "at once") aborter.abort(new Error("test abort"));
      await expect(setup).rejects.toThrow("test abort");
      expect(stopped.map((s) => s.replace(/ \(.*\)$/, "")), when).toEqual(when === "at once" ? ["the devcloud"] : ["the simulator", "the devcloud"]);
    }
  });
});
