import { describe, expect, it } from "vitest";
import { createLogger } from "../src/log.ts";
import { BacklogProgress, formatSeconds, Progress } from "../src/progress.ts";

type Line = Record<string, unknown> & { msg: string };

function setup(options: { tty?: boolean; total?: number } = {}) {
  const lines: Line[] = [];
  const logger = createLogger({ level: "info", destination: { write: (s: string) => void lines.push(JSON.parse(s) as Line) } });
  const screen: string[] = [];
  const clock = { t: 1_000 };
  const progress = new Progress({
    label: "saw-1: subscribing",
    total: options.total ?? 1_000,
    unit: "items",
    logger,
    fields: { machine: "saw-1" },
    tty: { isTTY: options.tty ?? false, columns: 200, write: (s: string) => screen.push(s) },
    everyMs: 10_000,
    now: () => clock.t,
  });
  return { lines, screen, clock, progress };
}

describe("Progress", () => {
  it("off a terminal: a line with percent and ETA at most every 10 s, and one at the end", () => {
    const { lines, screen, clock, progress } = setup();
    clock.t += 5_000;
    progress.set(100);
    expect(lines).toEqual([]);
    clock.t += 5_000; // 10 s in, 250 of 1000: 30 s to go at that rate
    progress.set(250);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ event: "progress", machine: "saw-1", operation: "saw-1: subscribing", done: 250, total: 1_000, percent: 25, etaSeconds: 30 });
    expect(lines[0]!.msg).toBe("saw-1: subscribing: 25% (250 of 1000 items), about 30 s left");
    clock.t += 9_999;
    progress.add(250);
    expect(lines).toHaveLength(1);
    clock.t += 1;
    progress.add(0);
    expect(lines[1]).toMatchObject({ percent: 50, etaSeconds: 20 });
    clock.t += 3_000;
    progress.set(1_000);
    progress.end();
    expect(lines[2]).toMatchObject({ event: "progress", outcome: "done", done: 1_000, total: 1_000, seconds: 23 });
    expect(lines).toHaveLength(3);
    expect(screen).toEqual([]);
  });

  it("never goes back or past the total, and ends once", () => {
    const { lines, clock, progress } = setup();
    progress.set(600);
    progress.set(200);
    expect(progress.done).toBe(600);
    progress.add(10_000);
    expect(progress.done).toBe(1_000);
    clock.t += 1_000;
    progress.end("stopped");
    progress.end();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ outcome: "stopped", done: 1_000 });
  });

  it("before anything is done the time left is unknown", () => {
    const { lines, clock, progress } = setup();
    clock.t += 10_000;
    progress.set(0);
    expect(lines[0]).toMatchObject({ percent: 0, etaSeconds: null });
    expect(lines[0]!.msg).toContain("time left unknown");
  });

  it("on a terminal: a bar redrawn at most every 200 ms instead of lines, cleared at the end", () => {
    const { lines, screen, clock, progress } = setup({ tty: true });
    clock.t += 100;
    progress.set(100);
    expect(screen).toEqual([]);
    clock.t += 100; // 200 ms, 500 of 1000
    progress.set(500);
    expect(screen).toHaveLength(1);
    expect(screen[0]).toBe(`\r\x1b[2Ksaw-1: subscribing [${"#".repeat(15)}${"-".repeat(15)}] 50% 500/1000 items, about 0 s left`);
    expect(lines).toEqual([]);
    progress.end();
    expect(screen[1]).toBe("\r\x1b[2K");
    expect(lines).toHaveLength(1);
  });

  it("formats the time left", () => {
    expect(formatSeconds(59)).toBe("59 s");
    expect(formatSeconds(61)).toBe("1 min 1 s");
    expect(formatSeconds(3_720)).toBe("1 h 2 min");
  });
});

describe("BacklogProgress", () => {
  it("starts at a large backlog, counts what left since, and ends once less than a tenth of the minimum is left", () => {
    const lines: Line[] = [];
    const logger = createLogger({ level: "info", destination: { write: (s: string) => void lines.push(JSON.parse(s) as Line) } });
    const clock = { t: 0 };
    const backlog = new BacklogProgress({ label: "uplink: sending the backlog", unit: "values", min: 100_000, logger, everyMs: 10_000, tty: { isTTY: false, write: () => true }, now: () => clock.t });
    backlog.observe(99_999);
    clock.t += 20_000;
    backlog.observe(99_999);
    expect(lines).toEqual([]);
    backlog.observe(400_000);
    clock.t += 10_000;
    backlog.observe(300_000);
    expect(lines[0]).toMatchObject({ event: "progress", done: 100_000, total: 400_000, percent: 25, etaSeconds: 30 });
    clock.t += 10_000;
    backlog.observe(10_000);
    expect(lines).toHaveLength(2);
    backlog.observe(9_999);
    expect(lines[2]).toMatchObject({ outcome: "done", done: 390_001, total: 400_000 });
    backlog.observe(50_000);
    backlog.stop("stopped");
    expect(lines).toHaveLength(3);
  });

  it("a connector stopping ends the line as stopped", () => {
    const lines: Line[] = [];
    const logger = createLogger({ level: "info", destination: { write: (s: string) => void lines.push(JSON.parse(s) as Line) } });
    const backlog = new BacklogProgress({ label: "b", unit: "values", min: 10, logger, tty: { isTTY: false, write: () => true }, now: () => 0 });
    backlog.observe(20);
    backlog.stop("stopped");
    expect(lines).toEqual([expect.objectContaining({ outcome: "stopped", done: 0, total: 20 })]);
  });
});
