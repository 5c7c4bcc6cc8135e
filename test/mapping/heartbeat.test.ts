import { describe, expect, it } from "vitest";
import { Heartbeats } from "../../src/opcua/subscription/heartbeat.ts";

const item = (v: number) => ({ key: "k", v, q: 0, t: "2026-01-01T00:00:00.000Z" });

describe("heartbeats", () => {
  it("resend the last value once per quiet period, marked and stamped with the heartbeat's time", () => {
    const hb = new Heartbeats();
    hb.set("k", 2, 0);
    expect(hb.due(2500)).toEqual([]); // nothing sent yet: nothing to repeat
    hb.sent("k", item(7), 3000);
    expect(hb.due(4999)).toEqual([]);
    expect(hb.due(5000)).toEqual([{ key: "k", v: 7, q: 0, t: new Date(5000).toISOString(), hb: true }]);
    expect(hb.due(6000)).toEqual([]);
    // a late tick does not shift the grid
    expect(hb.due(7100).map((i) => i.t)).toEqual([new Date(7100).toISOString()]);
    expect(hb.due(8999)).toEqual([]);
    expect(hb.due(9000)).toHaveLength(1);
  });

  it("a real change restarts the period; 0 seconds or delete stops it", () => {
    const hb = new Heartbeats();
    hb.set("k", 1, 0);
    hb.sent("k", item(1), 0);
    hb.sent("k", item(2), 900);
    expect(hb.due(1000)).toEqual([]);
    expect(hb.due(1900)[0]).toMatchObject({ v: 2, hb: true });
    hb.set("k", 0, 2000);
    expect(hb.size).toBe(0);
    expect(hb.due(10_000)).toEqual([]);
    hb.set("other", 1, 0);
    hb.sent("other", { ...item(3), key: "other" }, 0);
    hb.delete("other");
    expect(hb.due(10_000)).toEqual([]);
  });

  it("a key without heartbeat is not tracked", () => {
    const hb = new Heartbeats();
    hb.set("k", undefined, 0);
    hb.sent("k", item(1), 0);
    expect(hb.due(1e9)).toEqual([]);
  });
});
