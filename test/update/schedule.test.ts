import { describe, expect, it } from "vitest";
import { lockHolder, staggerMs, windowOpen } from "../../src/update/schedule.ts";

const every = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"] as ("mon" | "tue" | "wed" | "thu" | "fri" | "sat" | "sun")[];

describe("the check stagger", () => {
  it("is stable per instance, within one interval, and spreads a fleet", () => {
    expect(staggerMs("line-1", 21_600)).toBe(staggerMs("line-1", 21_600));
    const fleet = Array.from({ length: 200 }, (_, i) => staggerMs(`line-${i}`, 21_600));
    for (const s of fleet) expect(s >= 0 && s < 21_600_000).toBe(true);
    // 200 instances over 6 h: each quarter of the interval gets some
    const quarters = new Set(fleet.map((s) => Math.floor(s / 5_400_000)));
    expect(quarters.size).toBe(4);
    expect(new Set(fleet).size).toBeGreaterThan(190);
  });
});

describe("the maintenance window", () => {
  // 2026-12-07 is a Monday
  const at = (iso: string) => new Date(iso);
  it.each([
    ["no window: always open", undefined, "2026-12-07T12:00:00Z", true],
    ["inside a same-day window", { days: every, from: "02:00", to: "04:00", timezone: "UTC" }, "2026-12-07T03:59:00Z", true],
    ["at its end (exclusive)", { days: every, from: "02:00", to: "04:00", timezone: "UTC" }, "2026-12-07T04:00:00Z", false],
    ["before its start", { days: every, from: "02:00", to: "04:00", timezone: "UTC" }, "2026-12-07T01:59:00Z", false],
    ["on a day not listed", { days: ["tue"], from: "02:00", to: "04:00", timezone: "UTC" }, "2026-12-07T03:00:00Z", false],
    ["over midnight, before it on the day it opens", { days: ["mon"], from: "22:00", to: "02:00", timezone: "UTC" }, "2026-12-07T21:00:00Z", false],
    ["over midnight, late on the day it opens", { days: ["mon"], from: "22:00", to: "02:00", timezone: "UTC" }, "2026-12-07T23:30:00Z", true],
    ["over midnight, early the next day", { days: ["mon"], from: "22:00", to: "02:00", timezone: "UTC" }, "2026-12-08T01:30:00Z", true],
    ["over midnight, early on the day it opens (belongs to the day before)", { days: ["mon"], from: "22:00", to: "02:00", timezone: "UTC" }, "2026-12-07T01:30:00Z", false],
    ["over midnight from sunday into monday", { days: ["sun"], from: "23:00", to: "01:00", timezone: "UTC" }, "2026-12-07T00:30:00Z", true],
  ] as const)("%s", (_name, window, now, open) => {
    expect(windowOpen(window as never, at(now))).toBe(open);
  });

  it("reads local time in the container's time zone", () => {
    const tz = process.env.TZ;
    process.env.TZ = "Asia/Tokyo"; // UTC+9, no daylight saving
    try {
      const window = { days: every, from: "02:00", to: "04:00", timezone: "local" as const };
      expect(windowOpen(window, at("2026-12-06T18:00:00Z"))).toBe(true); // 03:00 in Tokyo
      expect(windowOpen(window, at("2026-12-07T03:00:00Z"))).toBe(false); // 12:00 in Tokyo
    } finally {
      if (tz === undefined) delete process.env.TZ;
      else process.env.TZ = tz;
    }
  });
});

describe("the update lock", () => {
  const probe = (files: string[], values: Record<string, unknown>) => ({ exists: (f: string) => files.includes(f), latest: (m: string, k: string) => values[`${m}/${k}`] });
  const lock = { file: "/run/kerf/update.lock", values: [{ machine: "saw", key: "job.state", equals: ["running", 3] }] };
  it.each([
    ["no lock configured", undefined, [], {}, null],
    ["the lock file exists", lock, ["/run/kerf/update.lock"], { "saw/job.state": "idle" }, /lock file \/run\/kerf\/update\.lock exists/],
    ["the value is one that holds it", lock, [], { "saw/job.state": "running" }, /saw\/job\.state is "running"/],
    ["an Int64 value (a string) equal to a number in the list", lock, [], { "saw/job.state": "3" }, /is "3"/],
    ["the value is another", lock, [], { "saw/job.state": "idle" }, null],
    ["a number that only looks alike", lock, [], { "saw/job.state": 30 }, null],
    ["no value seen yet", lock, [], {}, /has no value yet/],
  ] as const)("%s", (_name, l, files, values, expected) => {
    const held = lockHolder(l as never, probe([...files], values));
    if (expected === null) expect(held).toBeNull();
    else expect(held).toMatch(expected);
  });
});
