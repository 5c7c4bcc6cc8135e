import { describe, expect, it } from "vitest";
import { Deliveries, passed, tally, type TallyInput } from "../../src/chaos/tally.ts";

const T0 = Date.parse("2026-12-06T00:00:00Z");
const PERIOD = 100;
const at = (v: number) => T0 + v * PERIOD;

/** Two counters with values 0..99 at the cloud, except `skip` (per counter: values not stored). */
function input(skip: (counter: number, v: number) => boolean = () => false, extra: Partial<TallyInput> = {}): TallyInput {
  const d = new Deliveries(2);
  for (let c = 0; c < 2; c++) for (let v = 0; v <= 99; v++) if (!skip(c, v)) d.add(c, v, at(v));
  return { deliveries: d, endValue: 99, blind: [], dropWindows: [], droppedByBuffer: 0, restartValues: new Set(), kills: 0, slackMs: 500, tickTime: at, periodMs: PERIOD, ...extra };
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
    // the kill came 1.5 s after the values stopped arriving: those more than the slack (0.5 s)
    // before it were lost, the rest were not read
    const before = tally(input(gap, { blind: [{ from: at(55), to: at(60), why: "kill" }], kills: 1 }));
    expect(before).toMatchObject({ notRead: 2 * 10, lost: 2 * 10 });
    expect(before.lostGaps).toMatchObject([{ counter: 0, from: 40, to: 49 }, { counter: 1, from: 40, to: 49 }]);
    expect(passed(before)).toBe(false);
    // or the connector subscribed at value 45 and the values came only from 60 on: lost from the
    // period after its subscription
    const after = tally(input(gap, { blind: [{ from: at(40), to: at(45), why: "kill" }], kills: 1 }));
    expect(after).toMatchObject({ notRead: 2 * 7, lost: 2 * 13 });
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

  it("splits one gap into values evicted during a cut and values not read after the kill that followed", () => {
    // cut at value 10, killed at 20, subscribed again at 30: 10..19 evicted, 20..29 never read
    const gap = (_c: number, v: number) => v >= 10 && v <= 29;
    const windows = { dropWindows: [{ from: at(10), to: at(40), why: "fill" }], blind: [{ from: at(20), to: at(30), why: "kill" }], slackMs: 0 };
    expect(tally(input(gap, { ...windows, droppedByBuffer: 20 }))).toMatchObject({ dropped: 20, notRead: 20, lost: 0 });
    // the buffer counted only 15 of the 20 evictions
    expect(tally(input(gap, { ...windows, droppedByBuffer: 15 }))).toMatchObject({ dropped: 15, notRead: 20, lost: 5 });
  });

  it("counts values still in the buffer after the final stop as buffered", () => {
    const i = input((c, v) => c === 0 && v >= 90);
    i.buffered = new Deliveries(2);
    for (let v = 90; v <= 99; v++) i.buffered.add(0, v, at(v));
    expect(tally(i)).toMatchObject({ buffered: 10, lost: 0 });
    i.buffered.forget(0, 95);
    expect(tally(i)).toMatchObject({ buffered: 9, lost: 1 });
  });
});
