/**
 * When the agent checks for updates and when it may have one installed: pure functions of the
 * config, the instance id and the clock (unit-tested as tables).
 */
import { createHash } from "node:crypto";
import type { UpdateConfig } from "../config/schema.ts";

type Window = NonNullable<UpdateConfig["window"]>;
type Lock = NonNullable<UpdateConfig["lock"]>;
const DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"] as const;

/**
 * The delay of the first check after start, within one interval: derived from the instance id,
 * so that it is the same at every start of one instance and spread over a fleet.
 */
export function staggerMs(instance: string, intervalSeconds: number): number {
  const n = createHash("sha256").update(instance).digest().readBigUInt64BE(0);
  return Number(n % BigInt(intervalSeconds * 1000));
}

/**
 * Whether `now` is inside the maintenance window (always, without one). A window whose `to`
 * is not after `from` runs past midnight into the next day: it belongs to the day it opened on.
 */
export function windowOpen(window: Window | undefined, now: Date): boolean {
  if (!window) return true;
  const utc = window.timezone === "UTC";
  const day = utc ? now.getUTCDay() : now.getDay();
  const minute = (utc ? now.getUTCHours() : now.getHours()) * 60 + (utc ? now.getUTCMinutes() : now.getMinutes());
  const from = minutes(window.from);
  const to = minutes(window.to);
  const on = (d: number) => window.days.includes(DAYS[(d + 7) % 7]!);
  if (from < to) return on(day) && minute >= from && minute < to;
  return (on(day) && minute >= from) || (on(day - 1) && minute < to);
}

export function describeWindow(window: Window): string {
  return `${window.days.join(",")} ${window.from}-${window.to} ${window.timezone === "UTC" ? "UTC" : "local time"}`;
}

/** What the lock needs to know: whether a file exists, and a machine's latest value of a key (undefined: none seen yet). */
export interface LockProbe {
  exists(file: string): boolean;
  latest(machine: string, key: string): unknown;
}

/**
 * Why the update lock is held, or null when it is free. A watched value that is not known yet
 * holds the lock too: a job may be running on a machine that has not reported.
 */
export function lockHolder(lock: Lock | undefined, probe: LockProbe): string | null {
  if (!lock) return null;
  if (lock.file && probe.exists(lock.file)) return `the lock file ${lock.file} exists`;
  for (const v of lock.values ?? []) {
    const value = probe.latest(v.machine, v.key);
    if (value === undefined) return `${v.machine}/${v.key} has no value yet`;
    // Int64 values travel as strings: 3 in the config matches "3".
    if (v.equals.some((e) => e === value || (typeof value === "string" && typeof e === "number" && value === String(e)))) {
      return `${v.machine}/${v.key} is ${JSON.stringify(value)}`;
    }
  }
  return null;
}

const minutes = (hhmm: string) => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));
