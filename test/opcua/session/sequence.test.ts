import { describe, expect, it } from "vitest";
import { HeldMessages, SequenceTracker } from "../../../src/opcua/session/sequence.ts";

/** Feeds [seq, keepAlive] pairs; returns which were handed on and the gaps each one showed. */
function feed(tracker: SequenceTracker, messages: [number, boolean?][]): { delivered: number[]; gaps: number[][] } {
  const delivered: number[] = [];
  const gaps: number[][] = [];
  for (const [seq, keepAlive = false] of messages) {
    const v = tracker.accept(seq, keepAlive);
    if (v.deliver && !keepAlive) delivered.push(seq);
    if (v.gap.length) gaps.push(v.gap);
  }
  return { delivered, gaps };
}

describe("notification sequence numbers", () => {
  it("drops a message that comes again after a newer one (node-opcua's Republish after a break)", () => {
    const t = new SequenceTracker();
    expect(feed(t, [[41], [42], [43], [42]])).toEqual({ delivered: [41, 42, 43], gaps: [] });
    expect(t.hasMissing()).toBe(false);
  });

  it("names the numbers skipped in transit, takes each once when it is republished, then drops it", () => {
    const t = new SequenceTracker();
    expect(feed(t, [[63], [64], [66]])).toEqual({ delivered: [63, 64, 66], gaps: [[65]] });
    expect(t.missing()).toEqual([65]);
    expect(feed(t, [[65], [67], [67], [65]])).toEqual({ delivered: [65, 67], gaps: [] });
    expect(t.hasMissing()).toBe(false);
  });

  it("lists a longer gap oldest first and forgets a number the server no longer has", () => {
    const t = new SequenceTracker();
    feed(t, [[10], [14]]);
    expect(t.missing()).toEqual([11, 12, 13]);
    t.forget(11);
    expect(t.missing()).toEqual([12, 13]);
    expect(feed(t, [[11], [12]])).toEqual({ delivered: [12], gaps: [] });
  });

  it("reads a keep-alive as the number of the next message: no gap when it follows on, a gap when it runs ahead", () => {
    const t = new SequenceTracker();
    expect(feed(t, [[5], [6, true], [6, true], [6]])).toEqual({ delivered: [5, 6], gaps: [] });
    expect(feed(t, [[9, true]]).gaps).toEqual([[7, 8]]);
    // a new subscription's first keep-alive announces 1
    const fresh = new SequenceTracker();
    expect(feed(fresh, [[1, true], [1], [2]])).toEqual({ delivered: [1, 2], gaps: [] });
  });

  it("follows the wrap from 4294967295 to 1 (0 is never used)", () => {
    const t = new SequenceTracker();
    expect(feed(t, [[0xfffffffe], [0xffffffff], [1], [2]])).toEqual({ delivered: [0xfffffffe, 0xffffffff, 1, 2], gaps: [] });
    const skipped = new SequenceTracker();
    expect(feed(skipped, [[0xfffffffe], [1]]).gaps).toEqual([[0xffffffff]]);
    expect(feed(skipped, [[0xffffffff]]).delivered).toEqual([0xffffffff]);
  });

  it("takes a jump far beyond any retransmission queue as a new numbering, not as thousands of gaps", () => {
    const t = new SequenceTracker();
    expect(feed(t, [[3], [50_000], [50_001]])).toEqual({ delivered: [3, 50_000, 50_001], gaps: [] });
    expect(t.hasMissing()).toBe(false);
  });

  it("takes a number far behind the highest as a new numbering, not as a duplicate", () => {
    const t = new SequenceTracker();
    feed(t, [[40_000], [40_002]]);
    expect(feed(t, [[1], [2]])).toEqual({ delivered: [1, 2], gaps: [] });
    expect(t.hasMissing()).toBe(false);
  });
});

describe("messages held for a skipped one", () => {
  it("go out oldest first once nothing missing comes before them", () => {
    const h = new HeldMessages<string>();
    h.hold(66, "m66");
    h.hold(69, "m69");
    h.hold(67, "m67");
    expect(h.ready(65)).toEqual([]);
    expect(h.ready(68)).toEqual(["m66", "m67"]);
    expect(h.size).toBe(1);
    expect(h.ready(undefined)).toEqual(["m69"]);
  });

  it("all go out, in order, when waiting ends", () => {
    const h = new HeldMessages<number>();
    for (const n of [3, 0xffffffff, 1, 2]) h.hold(n, n);
    expect(h.drain()).toEqual([0xffffffff, 1, 2, 3]);
    expect(h.size).toBe(0);
  });
});
