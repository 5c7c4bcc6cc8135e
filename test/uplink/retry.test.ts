import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { KerfError } from "../../src/errors.ts";
import { backoff } from "../../src/backoff.ts";
import { classify, parseRetryAfter } from "../../src/uplink/retry.ts";

const noHeaders = {};

/** The whole table, one status at a time: what each answer from the cloud makes the sender do. */
function expected(status: number): string {
  if (status === 200) return "success";
  if (status === 408 || status === 429) return "retry";
  if (status === 413) return "split";
  if (status === 501) return "reject";
  if (status >= 500 && status <= 599) return "retry";
  if ([401, 403, 404, 405, 407, 415, 421].includes(status)) return "retry";
  if (status >= 400 && status <= 499) return "reject";
  return "retry"; // 1xx, other 2xx, 3xx: never an acknowledgement
}

describe("classify: every status from 100 to 599", () => {
  it("matches the policy table", () => {
    for (let status = 100; status <= 599; status++) {
      expect(classify({ status, headers: noHeaders }).action, `HTTP ${status}`).toBe(expected(status));
    }
  });

  it("logs transient failures as warnings and configuration failures as errors", () => {
    const level = (status: number) => {
      const d = classify({ status, headers: noHeaders });
      return d.action === "retry" ? d.level : d.action;
    };
    expect([408, 429, 500, 502, 503, 504, 599].map(level)).toEqual(Array(7).fill("warn"));
    expect([401, 403, 404, 405, 407, 415, 421, 201, 204, 301, 302, 101].map(level)).toEqual(Array(12).fill("error"));
  });

  it("rejects with the status in the reason", () => {
    expect(classify({ status: 400, headers: noHeaders })).toEqual({ action: "reject", reason: "HTTP 400" });
    expect(classify({ status: 501, headers: noHeaders })).toEqual({ action: "reject", reason: "HTTP 501" });
  });
});

describe("classify: errors", () => {
  it("retries network errors with a warning", () => {
    const d = classify({ error: new KerfError("UPLINK_NETWORK", "cannot reach the cloud: ECONNREFUSED") });
    expect(d).toMatchObject({ action: "retry", level: "warn" });
    expect(classify({ error: Object.assign(new Error("socket hang up"), { code: "ECONNRESET" }) })).toMatchObject({ action: "retry", level: "warn" });
    expect(classify({ error: "weird" })).toMatchObject({ action: "retry", level: "warn" });
  });

  it("retries pin, TLS and client-certificate failures but logs them as errors", () => {
    for (const code of ["UPLINK_PIN_MISMATCH", "UPLINK_TLS", "UPLINK_NO_CLIENT_CERT"] as const) {
      const d = classify({ error: new KerfError(code, "x") });
      expect(d, code).toMatchObject({ action: "retry", level: "error" });
      expect("delayMs" in d, code).toBe(false);
    }
  });
});

describe("Retry-After", () => {
  const now = Date.parse("2026-11-23T12:00:00Z");

  it("is honoured in seconds and as an HTTP-date for 429, 503 and 408", () => {
    expect(classify({ status: 429, headers: { "retry-after": "7" } }, { now })).toMatchObject({ action: "retry", delayMs: 7000 });
    expect(classify({ status: 503, headers: { "retry-after": "Mon, 23 Nov 2026 12:00:30 GMT" } }, { now })).toMatchObject({ action: "retry", delayMs: 30_000 });
    expect(classify({ status: 408, headers: { "Retry-After": "2" } }, { now })).toMatchObject({ action: "retry", delayMs: 2000 });
  });

  it("is capped, and a past date means now", () => {
    expect(classify({ status: 429, headers: { "retry-after": "86400" } }, { now, maxRetryAfterMs: 60_000 })).toMatchObject({ delayMs: 60_000 });
    expect(classify({ status: 429, headers: { "retry-after": "Mon, 23 Nov 2026 11:00:00 GMT" } }, { now })).toMatchObject({ delayMs: 0 });
  });

  it("falls back to backoff when absent or unreadable", () => {
    for (const value of [undefined, "", "soon", "-5", "1.5", "12abc"]) {
      const d = classify({ status: 503, headers: value === undefined ? {} : { "retry-after": value } }, { now });
      expect(d.action === "retry" && d.delayMs, String(value)).toBeUndefined();
    }
    expect(parseRetryAfter(undefined, now, 1000)).toBeUndefined();
  });

  it("takes the first of repeated headers", () => {
    expect(classify({ status: 429, headers: { "retry-after": ["3", "9"] } }, { now })).toMatchObject({ delayMs: 3000 });
  });

  it("is ignored on statuses that are not retried", () => {
    expect(classify({ status: 400, headers: { "retry-after": "5" } })).toEqual({ action: "reject", reason: "HTTP 400" });
  });
});

describe("backoff (full jitter)", () => {
  const options = { initialDelayMs: 100, maxDelayMs: 10_000 };

  it("spans [0, min(max, initial·2^(attempt-1))) exactly", () => {
    expect(backoff(1, options, () => 0)).toBe(0);
    expect(backoff(1, options, () => 0.999999)).toBe(99);
    expect(backoff(2, options, () => 0.5)).toBe(100);
    expect(backoff(4, options, () => 0.5)).toBe(400);
    expect(backoff(8, options, () => 0.999999)).toBe(9999);
    expect(backoff(1000, options, () => 0.999999)).toBe(9999);
  });

  it("stays within its window for any attempt and random value", () => {
    fc.assert(
      fc.property(fc.integer({ min: -5, max: 10_000 }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (attempt, r) => {
        const d = backoff(attempt, options, () => r);
        const ceiling = Math.min(options.maxDelayMs, options.initialDelayMs * 2 ** (Math.max(attempt, 1) - 1));
        return Number.isInteger(d) && d >= 0 && d < ceiling;
      }),
    );
  });

  it("spreads retries of many clients over the window rather than bunching them", () => {
    const delays = Array.from({ length: 2000 }, () => backoff(5, options));
    const buckets = [0, 0, 0, 0];
    for (const d of delays) buckets[Math.floor(d / 400)]!++;
    for (const b of buckets) expect(b).toBeGreaterThan(350);
  });
});
