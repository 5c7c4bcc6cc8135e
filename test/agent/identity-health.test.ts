import { describe, expect, it } from "vitest";
import { identityProblems, RENEWAL_OVERDUE_MS } from "../../src/agent/identity-health.ts";
import type { RenewalHealth } from "../../src/certs/renewal.ts";
import type { TokenHealth } from "../../src/uplink/tokens.ts";

const NOW = Date.parse("2026-12-06T12:00:00Z");

const cert = (over: Partial<RenewalHealth> = {}): RenewalHealth => ({
  instanceId: "inst-1",
  notAfter: new Date(NOW + 30 * 86_400_000).toISOString(),
  daysToExpiry: 30,
  expired: false,
  renewals: 0,
  lastRenewalError: null,
  nextRenewalAt: new Date(NOW + 86_400_000).toISOString(),
  renewing: false,
  ...over,
});

const tokens = (over: Partial<TokenHealth> = {}): TokenHealth => ({ expiresAt: NOW + 300_000, renewals: 3, lastError: null, lastErrorAt: null, nextRenewalAt: NOW + 200_000, renewing: false, ...over });

describe("health of the identity and the tokens", () => {
  it("has nothing to say while the certificate and the token are valid and their renewals scheduled", () => {
    expect(identityProblems("uplink", NOW, cert(), tokens())).toEqual([]);
    expect(identityProblems("uplink", NOW, null, null)).toEqual([]);
    // a renewal under way may run past its due time
    expect(identityProblems("uplink", NOW, cert({ nextRenewalAt: new Date(NOW - 10 * RENEWAL_OVERDUE_MS).toISOString(), renewing: true }), tokens({ nextRenewalAt: NOW - 10 * RENEWAL_OVERDUE_MS, renewing: true }))).toEqual([]);
  });

  it("is a problem when a renewal is overdue and none runs: the loop is stuck", () => {
    const late = NOW - RENEWAL_OVERDUE_MS - 5_000;
    const problems = identityProblems("uplink", NOW, cert({ nextRenewalAt: new Date(late).toISOString() }), tokens({ nextRenewalAt: late }));
    expect(problems.map((p) => p.code)).toEqual(["CERT_RENEWAL_STALLED", "AUTH_TOKEN_STALLED"]);
    expect(problems[0]!.reason).toBe(`the certificate renewal due at ${new Date(late).toISOString()} has not started (65 s overdue)`);
  });

  it("is a problem without a valid token when fetching one fails; a failing renewal of a valid token is not", () => {
    const expired = identityProblems("uplink", NOW, null, tokens({ expiresAt: NOW - 1_000, lastError: "token endpoint answered 503" }));
    expect(expired).toEqual([{ part: "uplink", reason: `the access token expired at ${new Date(NOW - 1_000).toISOString()} and fetching one fails: token endpoint answered 503`, code: "AUTH_TOKEN" }]);
    const none = identityProblems("uplink", NOW, null, tokens({ expiresAt: null, lastError: "connect ECONNREFUSED" }));
    expect(none[0]!.reason).toBe("no access token yet and fetching one fails: connect ECONNREFUSED");
    expect(identityProblems("uplink", NOW, null, tokens({ lastError: "token endpoint answered 503" }))).toEqual([]);
  });
});
