import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { CHECK_OVERDUE_MS, UpdatePart } from "../../src/agent/update-part.ts";
import type { LoadedConfig } from "../../src/config/load.ts";
import { silentLogger } from "../../src/log.ts";

/**
 * Health covers the update loop (issue 17): alive while its next check is scheduled and not
 * overdue. A timer that never fires (a blocked loop, a lost reschedule) used to go unnoticed.
 */
describe("the update loop in health", () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  function part(update: boolean): UpdatePart {
    const stateDir = mkdtempSync(path.join(os.tmpdir(), "kerf-update-loop-"));
    cleanups.push(() => rmSync(stateDir, { recursive: true, force: true }));
    const config = {
      instance: "kerf-test",
      cloud: { url: "https://127.0.0.1:1/", requestTimeoutMs: 1_000 },
      ...(update ? { update: { trustedRoot: path.join(stateDir, "root.json"), checkIntervalSeconds: 3_600, retryAfterErrorSeconds: 600, apply: "auto" } } : {}),
    };
    const p = new UpdatePart({
      loaded: { config } as unknown as LoadedConfig,
      stateDir,
      logger: silentLogger(),
      // no uplink yet: a check fails at once, as when the uplink has not started
      uplink: { transport: null, mirrorTransport: () => { throw new Error("unused"); } },
      sink: { write: () => undefined, commit: () => undefined },
      latest: () => undefined,
      runningVersion: "1.0.0",
      underLauncher: false,
      pins: { source: "cloud.pins", pins: [] },
    });
    cleanups.push(() => p.stop({ left: () => 1_000, drainMs: 0 }));
    return p;
  }

  it("is alive while the next check is scheduled and not overdue", async () => {
    const p = part(true);
    await p.start();
    const h = p.health(Date.now());
    expect(h.problems).toEqual([]);
    const next = Date.parse(h.update!.nextCheckAt!);
    expect(p.health(next + CHECK_OVERDUE_MS - 1_000).problems).toEqual([]);
  });

  it("is a problem once the scheduled check is overdue", async () => {
    const p = part(true);
    await p.start();
    const next = Date.parse(p.health().update!.nextCheckAt!);
    const problems = p.health(next + CHECK_OVERDUE_MS + 1_000).problems;
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ part: "update", code: "UPDATE_STALLED" });
    expect(problems[0]!.reason).toMatch(/^the update check due at .* has not started \(61 s overdue\)$/);
  });

  it("reschedules after a failed check, and judges the new time", async () => {
    const p = part(true);
    await p.start();
    const report = await p.checkNow();
    expect(report.outcome).toBe("failed");
    const h = p.health(Date.now());
    expect(h.problems).toEqual([]);
    const next = Date.parse(h.update!.nextCheckAt!);
    // retryAfterErrorSeconds from now, not the first schedule
    expect(next).toBeGreaterThan(Date.now() + 500_000);
    expect(p.health(next + CHECK_OVERDUE_MS + 1_000).problems).toHaveLength(1);
  });

  it("has nothing to judge when self-update is off, or before the start", async () => {
    const off = part(false);
    await off.start();
    expect(off.health(Date.now() + 1e9).problems).toEqual([]);
    expect(part(true).health(Date.now() + 1e9).problems).toEqual([]);
  });
});
