import { describe, expect, it } from "vitest";
import { createHostile, FAULT_KINDS, type FaultKind } from "../../src/devcloud/hostile.ts";

const picks = (h: ReturnType<typeof createHostile>, n: number, items = 1000) => Array.from({ length: n }, () => h.pick(items));

describe("the hostile devcloud's fault generator", () => {
  it("is reproducible from its seed, and another seed gives another sequence", () => {
    const a = picks(createHostile({ rate: 0.25, seed: 42 }), 500);
    expect(picks(createHostile({ rate: 0.25, seed: 42 }), 500)).toEqual(a);
    expect(picks(createHostile({ rate: 0.25, seed: 43 }), 500)).not.toEqual(a);
  });

  it("faults about `rate` of the requests, spread over every kind of the default mix, and counts them", () => {
    const h = createHostile({ rate: 0.25, seed: 42 });
    const n = 20_000;
    const faulted = picks(h, n).filter((k) => k !== undefined).length;
    expect(faulted / n).toBeGreaterThan(0.23);
    expect(faulted / n).toBeLessThan(0.27);
    for (const kind of FAULT_KINDS) expect(h.counts[kind] / faulted, kind).toBeGreaterThan(1 / FAULT_KINDS.length - 0.03);
    expect(Object.values(h.counts).reduce((a, b) => a + b, 0)).toBe(faulted);
  });

  it("draws only the kinds of its mix", () => {
    const h = createHostile({ rate: 1, seed: 1, mix: { reset: 1, drip: 3 } });
    const kinds = new Set(picks(h, 1000));
    expect([...kinds].sort()).toEqual(["drip", "reset"]);
    expect(h.counts.drip).toBeGreaterThan(h.counts.reset * 2);
  });

  it("gives 413 only to batches of at least tooLargeMinItems, so splitting ends with parts that pass", () => {
    const h = createHostile({ rate: 1, seed: 1, mix: { tooLarge: 1 }, tooLargeMinItems: 100 });
    expect(new Set(picks(h, 50, 99))).toEqual(new Set([undefined]));
    expect(new Set(picks(h, 50, 100))).toEqual(new Set<FaultKind>(["tooLarge"]));
    expect(h.counts.tooLarge).toBe(50);
  });

  it("never gives 413 to a batch the cloud has already stored: its resend must get the 200, not be split into new keys", () => {
    const h = createHostile({ rate: 1, seed: 1, mix: { tooLarge: 1 } });
    expect(new Set(picks(h, 50).map(() => h.pick(1000, true)))).toEqual(new Set([undefined]));
    expect(h.counts.tooLarge).toBe(50);
  });

  it("refuses a rate outside 0..1 and a mix without weight", () => {
    expect(() => createHostile({ rate: 1.5, seed: 1 })).toThrow(/between 0 and 1/);
    expect(() => createHostile({ rate: Number.NaN, seed: 1 })).toThrow(/between 0 and 1/);
    expect(() => createHostile({ rate: 0.5, seed: 1, mix: { reset: 0 } })).toThrow(/no kind/);
  });
});
