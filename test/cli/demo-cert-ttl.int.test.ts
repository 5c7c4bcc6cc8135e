/** `kerf demo --cert-ttl S`: short-lived certificates renewed over EST while values flow, nothing lost. */
import { describe, expect, it } from "vitest";
import { kerf } from "./helpers.ts";

describe("kerf demo --cert-ttl", () => {
  it("renews the certificate repeatedly while values flow and reports it in the summary", { timeout: 120_000 }, async () => {
    const started = Date.now();
    const r = await kerf(["demo", "--seconds", "25", "--cert-ttl", "12", "--quiet"], { timeoutMs: 100_000 });
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout.trimEnd().split("\n").at(-1)!) as Record<string, unknown>;
    expect(summary.certificateRenewals).toBeGreaterThanOrEqual(2);
    expect(summary.dropped).toBe(0);
    expect(summary.duplicates).toBe(0);
    expect(summary.acknowledged).toBe(summary.appended);
    // The newest certificate: issued during the run, valid for about --cert-ttl from then.
    const expires = Date.parse(String(summary.certificateExpiresAt));
    expect(expires).toBeGreaterThan(started + 12_000);
  });

  it("refuses a lifetime too short to renew in", async () => {
    const r = await kerf(["demo", "--cert-ttl", "3"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^kerf: demo: --cert-ttl must be at least 10 seconds, got '3'/);
  });
});
