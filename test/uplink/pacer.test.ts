import { describe, expect, it } from "vitest";
import { DOWN_AFTER, Pacer } from "../../src/uplink/pacer.ts";

const retry = { initialDelayMs: 500, maxDelayMs: 30_000, maxRetryAfterMs: 300_000 };
const pacer = (concurrency = 4, random = () => 0.5) => new Pacer({ concurrency, requestTimeoutMs: 30_000, minDeadlineMs: 1000, retry, random });

describe("the window", () => {
  it("starts at one request and opens by one per success, up to the concurrency", () => {
    const p = pacer(4);
    const limits = [p.limit()];
    for (let i = 0; i < 5; i++) {
      p.succeeded(10);
      limits.push(p.limit());
    }
    expect(limits).toEqual([1, 2, 3, 4, 4, 4]);
  });

  it("halves on a failure, once for the requests that were in flight together", () => {
    const p = pacer(8);
    for (let i = 0; i < 8; i++) p.succeeded(10);
    expect(p.limit()).toBe(8);
    p.failed(100, 200, undefined);
    expect(p.limit()).toBe(4);
    p.failed(150, 210, undefined); // started before the cut at 200: same round
    expect(p.limit()).toBe(4);
    p.succeeded(10);
    expect(p.limit()).toBe(5);
    p.failed(300, 400, undefined);
    expect(p.limit()).toBe(2);
  });

  it("some failures between successes never stop the uplink: no shared pause, the window stays open", () => {
    const p = pacer(4);
    let now = 0;
    // a third of the requests fail, up to DOWN_AFTER - 1 in a row
    const pattern = `FSSSFFSS${"F".repeat(DOWN_AFTER - 1)}SSSS`;
    for (let i = 0; i < 1000; i++) {
      now += 10;
      if (pattern[i % pattern.length] === "F") expect(p.failed(now - 5, now, i % 8 === 0 ? 1000 : undefined)).toBe(false);
      else p.succeeded(10);
      expect(p.pauseMs(now)).toBe(0);
      expect(p.down).toBe(false);
      expect(p.limit()).toBeGreaterThanOrEqual(1);
    }
  });
});

describe("down", () => {
  it(`after ${DOWN_AFTER} failures in a row: one request at a time, a shared pause with backoff, Retry-After when longer`, () => {
    const p = pacer(4, () => 0.5);
    for (let i = 0; i < 4; i++) p.succeeded(10);
    let now = 1000;
    for (let i = 1; i < DOWN_AFTER; i++) expect(p.failed(now, ++now, undefined)).toBe(false);
    expect(p.pauseMs(now)).toBe(0);
    expect(p.failed(now, ++now, undefined)).toBe(true);
    expect(p.down).toBe(true);
    expect(p.limit()).toBe(1);
    const pauses = [p.pauseMs(now)];
    for (let i = 0; i < 3; i++) {
      now += pauses.at(-1)!;
      p.failed(now, ++now, undefined);
      pauses.push(p.pauseMs(now));
    }
    expect(pauses).toEqual([250, 500, 1000, 2000]); // full jitter in [0, 500·2^(n-1)), halfway
    p.failed(now, ++now, 60_000);
    expect(p.pauseMs(now)).toBe(60_000);
    p.succeeded(10);
    expect(p.down).toBe(false);
    expect(p.pauseMs(now)).toBe(0);
    expect(p.limit()).toBe(2);
  });

  it("ends with any real answer from the cloud, not only an acknowledgement", () => {
    const p = pacer();
    for (let i = 0; i < DOWN_AFTER; i++) p.failed(i, i + 1, undefined);
    expect(p.down).toBe(true);
    p.answered();
    expect(p.down).toBe(false);
    expect(p.failures).toBe(0);
  });
});

describe("deadline and overdue", () => {
  it("is four times a slow recent success, at least the minimum, at most the request timeout", () => {
    const p = pacer();
    expect(p.deadlineMs()).toBe(1000);
    expect(p.overdueMs()).toBe(Number.POSITIVE_INFINITY); // nothing known yet: every request holds the window
    p.succeeded(20);
    expect(p.deadlineMs()).toBe(1000);
    expect(p.overdueMs()).toBe(100);
    p.succeeded(1500);
    expect(p.deadlineMs()).toBe(6000);
    expect(p.overdueMs()).toBe(3000);
    p.succeeded(20_000);
    expect(p.deadlineMs()).toBe(30_000);
  });

  it("is not lifted by one slow success among fast ones (a drip that finished), but follows a cloud that has become slow", () => {
    const p = pacer();
    for (let i = 0; i < 31; i++) p.succeeded(50);
    p.succeeded(7000);
    expect(p.deadlineMs()).toBe(1000);
    expect(p.overdueMs()).toBe(100);
    for (let i = 0; i < 4; i++) p.succeeded(7000);
    expect(p.deadlineMs()).toBe(28_000);
    // and forgets it again after 32 faster ones
    for (let i = 0; i < 32; i++) p.succeeded(50);
    expect(p.deadlineMs()).toBe(1000);
  });

  it("doubles with each earlier attempt of the batch, so a batch slower than the others is not cut off forever", () => {
    const p = pacer();
    p.succeeded(100);
    expect([0, 1, 2, 3, 4, 10].map((a) => p.deadlineMs(a))).toEqual([1000, 2000, 4000, 8000, 16_000, 30_000]);
  });

  it("doubles with each probe while down, so a cloud that became slow is reached again; a probe always holds the window", () => {
    const p = pacer();
    p.succeeded(100);
    for (let i = 0; i < DOWN_AFTER; i++) p.failed(i, i + 1, undefined);
    const deadlines = [p.deadlineMs()];
    for (let i = 0; i < 4; i++) {
      p.failed(10 + i, 11 + i, undefined);
      deadlines.push(p.deadlineMs());
    }
    expect(deadlines).toEqual([2000, 4000, 8000, 16_000, 30_000]);
    expect(p.overdueMs()).toBe(Number.POSITIVE_INFINITY);
  });
});
