import { describe, expect, it } from "vitest";
import { Deliveries, passed, tally, type TallyInput } from "../../src/chaos/tally.ts";

const T0 = Date.parse("2026-12-06T00:00:00Z");
const PERIOD = 100;
const at = (v: number) => T0 + v * PERIOD;

/** Two counters with values 0..99 at the cloud, except `skip` (per counter: values not stored). */
function input(skip: (counter: number, v: number) => boolean = () => false, extra: Partial<TallyInput> = {}): TallyInput {
  const d = new Deliveries(2);
  for (let c = 0; c < 2; c++) for (let v = 0; v <= 99; v++) if (!skip(c, v)) d.add(c, v, at(v));
  return { deliveries: d, endValue: 99, blind: [], dropWindows: [], droppedByBuffer: 0, restartValues: new Set(), kills: 0, slackMs: 500, ...extra };
}

describe("the chaos tally", () => {
  it("passes when every value arrived once", () => {
    const t = tally(input());
    expect(t).toMatchObject({ values: 200, delivered: 200, lost: 0, duplicates: 0, notRead: 0, dropped: 0 });
    expect(passed(t)).toBe(true);
  });

  it("fails on one value missing from the store", () => {
    const i = input();
    i.deliveries.forget(1, 42);
    const t = tally(i);
    expect(t).toMatchObject({ values: 200, delivered: 199, lost: 1 });
    expect(t.lostGaps).toMatchObject([{ counter: 1, from: 42, to: 42 }]);
    expect(passed(t)).toBe(false);
  });

  it("fails on the tail missing: values up to the simulator's end value must all arrive", () => {
    const t = tally(input((_, v) => v === 99));
    expect(t.lost).toBe(2);
  });

  it("counts a gap inside a kill's blind window as not read, and the same gap beginning before it as lost", () => {
    const gap = (_c: number, v: number) => v >= 40 && v <= 59;
    // killed at value 40's time, subscribed again at value 60's: values 40..59 were never read
    const inside = tally(input(gap, { blind: [{ from: at(40), to: at(60), why: "kill" }], kills: 1 }));
    expect(inside).toMatchObject({ notRead: 40, lost: 0, delivered: 160 });
    expect(passed(inside)).toBe(true);
    // the same gap, but the kill came 1.5 s (more than the slack) after the values stopped arriving
    const before = tally(input(gap, { blind: [{ from: at(55), to: at(60), why: "kill" }], kills: 1 }));
    expect(before).toMatchObject({ notRead: 0, lost: 40 });
    expect(passed(before)).toBe(false);
    // or the connector subscribed long before the values came again
    const after = tally(input(gap, { blind: [{ from: at(40), to: at(45), why: "kill" }], kills: 1 }));
    expect(after.lost).toBe(40);
  });

  it("counts a gap in a drop window as dropped only as far as the buffer counted drops", () => {
    const gap = (c: number, v: number) => c === 0 && v >= 10 && v <= 19;
    const window = { dropWindows: [{ from: at(5), to: at(30), why: "cut" }] };
    expect(tally(input(gap, { ...window, droppedByBuffer: 10 }))).toMatchObject({ dropped: 10, lost: 0, droppedOther: 0 });
    expect(tally(input(gap, { ...window, droppedByBuffer: 12 }))).toMatchObject({ dropped: 10, lost: 0, droppedOther: 2 });
    const short = tally(input(gap, { ...window, droppedByBuffer: 7 }));
    expect(short).toMatchObject({ dropped: 7, lost: 3 });
    expect(passed(short)).toBe(false);
    // outside any drop window the buffer's count explains nothing
    expect(tally(input(gap, { droppedByBuffer: 10 })).lost).toBe(10);
  });

  it("fails on a value stored twice, except a restarted simulator's current value under a new source time", () => {
    const twice = input();
    twice.deliveries.add(0, 30, at(30));
    expect(tally(twice)).toMatchObject({ duplicates: 1 });
    expect(passed(tally(twice))).toBe(false);
    const restart = input(() => false, { restartValues: new Set([30]) });
    restart.deliveries.add(0, 30, at(30) + 5000);
    expect(tally(restart)).toMatchObject({ duplicates: 0, reannounced: 1 });
    // the same source time again is a resend, restart or not
    restart.deliveries.add(1, 30, at(30));
    expect(tally(restart).duplicates).toBe(1);
  });
});
