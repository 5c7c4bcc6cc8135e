/**
 * The short chaos run inside npm test (npm run chaos is the long one): a few SIGKILLs of a real
 * `kerf run`, each other fault once, then every value of the simulator's load counters accounted
 * for from the cloud's store. Then one delivered value is removed from what the store reported,
 * and the same tally must fail: the check can fail.
 */
import { describe, expect, it } from "vitest";
import { PRESETS, runChaos } from "../../src/chaos/run.ts";
import { formatTally, passed, tally } from "../../src/chaos/tally.ts";

describe("chaos, short", () => {
  it("accounts for every value through kills, uplink faults, a simulator restart, a clock step and a full buffer", { timeout: 300_000 }, async () => {
    const lines: string[] = [];
    const result = await runChaos({ ...PRESETS.test, bufferMaxBytes: "1MiB", seed: 17, slackMs: 2000, say: (l) => lines.push(`${new Date().toISOString().slice(11, 23)} ${l}`) });
    const report = [...lines, formatTally(result), ...result.failures, ...result.warnings].join("\n");
    expect(result.failures, report).toEqual([]);
    expect(passed(result), report).toBe(true);
    // the planned kills and the one before the buffer fill
    expect(result.kills).toBe(PRESETS.test.kills + 1);
    expect(result.dropped, report).toBeGreaterThan(0);
    expect(result.lost, report).toBe(0);
    expect(result.duplicates, report).toBe(0);
    // the run did deliver, and its kills left values unread
    expect(result.delivered).toBeGreaterThan(PRESETS.test.counters * 100);
    expect(result.notRead).toBeGreaterThan(0);
    expect(Object.keys(result.faults).sort()).toEqual(["black-hole", "clock", "cut", "fill", "kill", "reset", "simulator", "slow"]);

    // One value the cloud stored, removed from the record: the tally must now fail.
    const { deliveries, endValue } = result.input;
    const counter = PRESETS.test.counters - 1;
    const v = endValue - 5;
    expect(deliveries.has(counter, v)).toBe(true);
    deliveries.forget(counter, v);
    const broken = tally(result.input);
    expect(broken.lost).toBe(1);
    expect(passed(broken)).toBe(false);
  });
});
