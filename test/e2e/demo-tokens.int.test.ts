/** `kerf demo --token-ttl`: short-lived tokens renewed while values flow, and the summary says how often. */
import { describe, expect, it } from "vitest";
import { kerf } from "../cli/helpers.ts";

describe("kerf demo with short-lived access tokens", () => {
  it("renews 2-second tokens repeatedly over a 12-second demo and loses nothing", { timeout: 90_000 }, async () => {
    const r = await kerf(["demo", "--seconds", "12", "--token-ttl", "2", "--quiet"], { timeoutMs: 80_000 });
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as Record<string, number>;
    expect(summary.acknowledged).toBeGreaterThan(0);
    expect(summary.dropped).toBe(0);
    expect(summary.duplicates).toBe(0);
    expect(summary.tokenRenewals).toBeGreaterThanOrEqual(3);
  });

  it("refuses a token lifetime of 0 with a usage error", async () => {
    const r = await kerf(["demo", "--token-ttl", "0"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--token-ttl must be at least 1 second/);
  });
});
