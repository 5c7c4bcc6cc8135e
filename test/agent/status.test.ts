import { describe, expect, it } from "vitest";
import { formatStatus, statusSummary } from "../../src/agent/status.ts";
import { NOW, report } from "./status-fixture.ts";

describe("kerf status: the summary of a health report", () => {
  it("sums up each machine, the uplink, the buffer, the identity, the tokens and the update loop", () => {
    const s = statusSummary(report(), NOW);
    expect(s).toMatchObject({ status: "healthy", version: "1.4.0", instance: "kerf-line1-saw", state: "running", reportAgeS: 2 });
    expect(s.machines).toEqual([
      { machine: "saw-1", state: "connected", security: "SignAndEncrypt Basic256Sha256", items: 42, lastValueAgeS: 1.5, reconnects: 2, lastError: null },
      { machine: "edge-1", state: "reconnecting", security: null, items: 0, lastValueAgeS: null, reconnects: 0, lastError: "connect ECONNREFUSED 10.0.0.7:4840" },
    ]);
    expect(s.uplink).toEqual({ lastAckAgeS: 4, consecutiveFailures: 0, lastError: null });
    expect(s.buffer).toEqual({ items: 120, bytes: 8_192, oldestAgeS: 30, droppedItems: 5, dropped: { buffer_full: 5, rejected: 0, too_large: 0, tampered: 0 } });
    expect(s.identity).toMatchObject({ instanceId: "inst-7f3a", daysToExpiry: 20, renewals: 2 });
    expect(s.tokens).toMatchObject({ renewals: 9 });
    expect(s.update).toMatchObject({ state: "idle", lastOutcome: "current", lastInstall: "1.4.0 committed" });

    const text = formatStatus(s);
    expect(text).toMatch(/^kerf 1\.4\.0 {2}instance kerf-line1-saw {2}healthy: ok\n/);
    expect(text).toContain("machine   saw-1: connected, SignAndEncrypt Basic256Sha256, 42 items, last value 1.5 s ago, 2 reconnects\n");
    expect(text).toContain("machine   edge-1: reconnecting, security not negotiated yet, 0 items, last value never; last error: connect ECONNREFUSED 10.0.0.7:4840\n");
    expect(text).toContain("buffer    120 values, 8192 bytes, oldest 30 s old; dropped 5 (buffer_full 5)\n");
    expect(text).toContain("identity  inst-7f3a, certificate expires");
    expect(text).toContain("last install: 1.4.0 committed\n");
    expect(text).toContain("commands  off\n");
    const withCommands = statusSummary(
      report({
        commands: {
          polling: { lastPollAt: NOW - 20_000, lastError: "poll answered 503", lastErrorCode: "UPLINK_HTTP", consecutiveFailures: 2, received: 4 },
          accepted: 3,
          refused: 1,
          lastCommand: { jti: "c-1", action: "read", state: "succeeded", at: new Date(NOW - 60_000).toISOString() },
          lastRefusal: null,
        },
      }),
      NOW,
    );
    expect(withCommands.commands).toEqual({ lastPollAgeS: 20, consecutiveFailures: 2, lastError: "poll answered 503", accepted: 3, refused: 1, lastCommand: `read succeeded at ${new Date(NOW - 60_000).toISOString()}` });
    expect(formatStatus(withCommands)).toContain(`commands  last poll 20 s ago, 2 failures in a row (poll answered 503); 3 accepted, 1 refused; last: read succeeded at ${new Date(NOW - 60_000).toISOString()}\n`);
    expect(text).toContain(`tokens    9 renewed, current expires ${new Date(NOW + 300_000).toISOString()}, next renewal not scheduled\n`);
  });

  it("carries the verdict's problems, and reads reports of older versions", () => {
    const problem = { part: "uplink", reason: "no acknowledgement from the cloud for 95 s while 120 values wait (limit 90 s)", code: "UPLINK_TIMEOUT" };
    const s = statusSummary(report({ problems: [problem] }), NOW);
    expect(s.status).toBe("unhealthy");
    expect(formatStatus(s)).toContain(`PROBLEM   uplink: ${problem.reason} (code UPLINK_TIMEOUT)\n`);

    const old = report({ version: undefined, instance: undefined, identity: undefined, certificate: undefined, update: undefined, metrics: undefined, tokens: undefined });
    old.sessions = [{ machine: "saw-1", state: "connected", lastError: null, lastDataAt: null }];
    old.buffer = { items: 0, bytes: 0, droppedItems: 0 };
    const o = statusSummary(old, NOW);
    expect(o).toMatchObject({ version: null, identity: null, update: null, buffer: { oldestAgeS: null, dropped: null } });
    expect(o.machines[0]).toMatchObject({ security: null, items: null, reconnects: null });
    expect(formatStatus(o)).toContain("update    off\n");
  });
});
