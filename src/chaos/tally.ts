/**
 * The chaos suite's accounting. It never reads the connector's own counts of what it sent:
 * the values that exist come from the simulator's load counters (each counter counts up by one
 * per tick, all in lockstep, so the values of a counter are the integers from the first one the
 * cloud saw to the simulator's value at the end), and the values that arrived come from the
 * devcloud's store. Every value is then exactly one of:
 *
 * - delivered: stored by the cloud (a second copy counts as a duplicate);
 * - not read: no connector was reading when the server published it. These are the values in a
 *   gap that lies inside a blind window: from a SIGKILL of the connector, or a stop of the
 *   simulator, to the moment the next connector process said "connected and subscribed" (the
 *   moment the suite received the line, on its own clock). The gap may start `slackMs` before
 *   the kill: values the killed process had received but not yet committed to its buffer were
 *   never the connector's (the durable buffer owns a value from its commit on). The value after
 *   the gap must be one the new subscription found, from before that line;
 * - still buffered: in the connector's buffer file after its final stop (not yet acknowledged);
 * - dropped: a gap inside an uplink fault during which the buffer evicted (buffer_full), up to
 *   the number of items the buffer counted as dropped, by reason, in its own file;
 * - lost: anything else. One lost value fails the run.
 *
 * A value at which a restarted simulator went on counting is published twice by the server
 * (the stop's last value, and the same value as the restarted server's current value with a
 * new source time): the second copy is counted as `reannounced`, not as a duplicate.
 */

export interface Window {
  from: number;
  to: number;
  why: string;
}

/** What the cloud stored of the load counters: per counter, each value's count and first source time. */
export class Deliveries {
  readonly #counts: Uint8Array[];
  readonly #times: Float64Array[];
  /** Copies beyond the first: counter, value, source time. */
  readonly repeats: { counter: number; v: number; t: number }[] = [];
  heartbeats = 0;
  readonly counters: number;

  constructor(counters: number) {
    this.counters = counters;
    this.#counts = Array.from({ length: counters }, () => new Uint8Array(1024));
    this.#times = Array.from({ length: counters }, () => new Float64Array(1024));
  }

  add(counter: number, v: number, t: number): void {
    if (!Number.isInteger(v) || v < 0 || counter < 0 || counter >= this.counters) throw new Error(`not a load counter value: counter ${counter}, value ${v}`);
    this.#grow(counter, v);
    const counts = this.#counts[counter]!;
    if (counts[v]! > 0) {
      this.repeats.push({ counter, v, t });
      return;
    }
    counts[v] = 1;
    this.#times[counter]![v] = t;
  }

  /** Removes a delivered value as if the cloud had never stored it: how the tests show that a loss fails the tally. */
  forget(counter: number, v: number): void {
    this.#counts[counter]![v] = 0;
  }

  has(counter: number, v: number): boolean {
    return (this.#counts[counter]![v] ?? 0) > 0;
  }

  time(counter: number, v: number): number {
    return this.#times[counter]![v]!;
  }

  /** The lowest and highest value stored for a counter, or undefined if none. */
  range(counter: number): { first: number; last: number } | undefined {
    const counts = this.#counts[counter]!;
    const first = counts.indexOf(1);
    if (first < 0) return undefined;
    return { first, last: counts.lastIndexOf(1) };
  }

  #grow(counter: number, v: number): void {
    const counts = this.#counts[counter]!;
    if (v < counts.length) return;
    let size = counts.length;
    while (size <= v) size *= 2;
    const c = new Uint8Array(size);
    c.set(counts);
    const t = new Float64Array(size);
    t.set(this.#times[counter]!);
    this.#counts[counter] = c;
    this.#times[counter] = t;
  }
}

export interface TallyInput {
  deliveries: Deliveries;
  /** Load values in the connector's buffer file after its final stop. */
  buffered?: Deliveries;
  /** The simulator's counter value at the end mark: the last value that must be accounted for. */
  endValue: number;
  /** When no connector was reading (see above). */
  blind: Window[];
  /** Uplink faults during which the buffer said it evicted. */
  dropWindows: Window[];
  /** When the simulator published value v (the same for every counter), as far as known. */
  tickTime: (v: number) => number | undefined;
  periodMs: number;
  /** Items the buffer counted as dropped, all reasons, from its own file. */
  droppedByBuffer: number;
  /** Values at which a restarted simulator went on counting. */
  restartValues: ReadonlySet<number>;
  kills: number;
  /** How long before a kill or stop a value may have been in flight (received, not yet committed). */
  slackMs: number;
}

export interface Gap {
  counter: number;
  from: number;
  to: number;
  /** Source time of the value before the gap (NaN if none), and when the gap's first value was published. */
  after: number;
  before: number;
  as: "notRead" | "dropped" | "lost";
}

export interface Tally {
  kills: number;
  values: number;
  delivered: number;
  dropped: number;
  lost: number;
  duplicates: number;
  notRead: number;
  buffered: number;
  reannounced: number;
  /** Items the buffer counted as dropped and matched to no missing value in a drop window (status messages; evicted values published at a kill, counted as not read). */
  droppedOther: number;
  heartbeats: number;
  /** The longest time from the last value stored before a kill or stop to that kill or stop (measured in-flight window). */
  maxLeadMs: number;
  lostGaps: Gap[];
  duplicateSamples: { counter: number; v: number; t: number }[];
}

/** Merges overlapping windows, so that a gap spanning two of them (a kill during a simulator restart) is inside one. */
export function mergeWindows(windows: readonly Window[]): Window[] {
  const sorted = [...windows].sort((a, b) => a.from - b.from);
  const out: Window[] = [];
  for (const w of sorted) {
    const last = out.at(-1);
    if (last && w.from <= last.to) {
      last.to = Math.max(last.to, w.to);
      last.why += ` + ${w.why}`;
    } else out.push({ ...w });
  }
  return out;
}

export function tally(input: TallyInput): Tally {
  const { deliveries: d, endValue, slackMs } = input;
  const blind = mergeWindows(input.blind);
  const drops = mergeWindows(input.dropWindows);
  let values = 0;
  let delivered = 0;
  let notRead = 0;
  let buffered = 0;
  let dropCandidates = 0;
  // Not read only through the slack before a kill, and inside a drop window: evicted, as far as the buffer's count goes.
  let slackInDrop = 0;
  let maxLeadMs = 0;
  const gaps: Gap[] = [];
  // Each missing value by the time the server published it: a blind window (with the slack
  // before it) makes it not read, else a drop window a drop candidate, else it is lost.
  const classify = (t: number): Gap["as"] => {
    const w = blind.find((b) => t >= b.from - slackMs && t <= b.to + input.periodMs);
    if (w) return "notRead";
    return drops.some((b) => t >= b.from - slackMs && t <= b.to + input.periodMs) ? "dropped" : "lost";
  };
  for (let c = 0; c < d.counters; c++) {
    const r = d.range(c);
    if (!r || r.first > endValue) continue;
    values += endValue - r.first + 1;
    let run: Gap | undefined;
    for (let v = r.first; v <= endValue; v++) {
      if (d.has(c, v)) {
        delivered++;
        run = undefined;
        continue;
      }
      if (input.buffered?.has(c, v)) {
        buffered++;
        run = undefined;
        continue;
      }
      const t = input.tickTime(v);
      const as = t === undefined ? "lost" : classify(t);
      if (as === "notRead") {
        notRead++;
        if (!blind.some((b) => t! >= b.from && t! <= b.to + input.periodMs) && drops.some((b) => t! >= b.from - slackMs && t! <= b.to + input.periodMs)) slackInDrop++;
        // how long before the kill or stop the last value the connector kept was published
        const w = blind.find((b) => t! >= b.from - slackMs && t! <= b.to + input.periodMs)!;
        if (d.has(c, v - 1)) maxLeadMs = Math.max(maxLeadMs, w.from - d.time(c, v - 1));
      } else if (as === "dropped") dropCandidates++;
      if (run && run.as === as && run.to === v - 1) run.to = v;
      else gaps.push((run = { counter: c, from: v, to: v, after: d.has(c, v - 1) ? d.time(c, v - 1) : Number.NaN, before: t ?? Number.NaN, as }));
    }
  }
  // The buffer's count bounds the drops: more missing values in drop windows than it counted are lost.
  let dropped = Math.min(dropCandidates, input.droppedByBuffer);
  const evictedBeforeKill = Math.min(slackInDrop, Math.max(0, input.droppedByBuffer - dropCandidates));
  dropped += evictedBeforeKill;
  notRead -= evictedBeforeKill;
  let lost = gaps.filter((g) => g.as === "lost").reduce((n, g) => n + g.to - g.from + 1, 0);
  if (dropCandidates > dropped) {
    lost += dropCandidates - dropped;
    for (const g of gaps) if (g.as === "dropped") g.as = "lost";
  }
  let reannounced = 0;
  const duplicateSamples: Tally["duplicateSamples"] = [];
  for (const rep of d.repeats) {
    if (rep.v > endValue) continue;
    if (input.restartValues.has(rep.v) && rep.t !== d.time(rep.counter, rep.v)) reannounced++;
    else duplicateSamples.push(rep);
  }
  return {
    kills: input.kills,
    values,
    delivered,
    dropped,
    lost,
    duplicates: duplicateSamples.length,
    notRead,
    buffered,
    reannounced,
    droppedOther: Math.max(0, input.droppedByBuffer - dropped),
    heartbeats: d.heartbeats,
    maxLeadMs: Math.round(maxLeadMs),
    lostGaps: gaps.filter((g) => g.as === "lost").slice(0, 20),
    duplicateSamples: duplicateSamples.slice(0, 20),
  };
}

/** The human part of the report; the caller prints the JSON line last. */
export function formatTally(t: Tally): string {
  const lines = [
    `values        ${t.values}  (load counters, first value the cloud saw .. the simulator's value at the end)`,
    `delivered     ${t.delivered}  exactly once`,
    `not read      ${t.notRead}  (published while no connector was reading: after a kill or a simulator stop)`,
    `buffered      ${t.buffered}  (still in the connector's buffer after its final stop)`,
    `dropped       ${t.dropped}  (buffer full, counted by the buffer)`,
    `lost          ${t.lost}`,
    `duplicates    ${t.duplicates}`,
    `reannounced   ${t.reannounced}  (a restarted simulator's current value, new source time)`,
    `other drops   ${t.droppedOther}  (counted by the buffer, matched to no value missing in a drop window: status messages, values evicted that were published at a kill and counted as not read)`,
    `heartbeats    ${t.heartbeats}`,
    `kills         ${t.kills}`,
    `longest lead  ${t.maxLeadMs} ms from the last value stored to a kill or stop`,
  ];
  const sum = t.delivered + t.buffered + t.notRead + t.dropped + t.lost;
  if (sum !== t.values) lines.push(`UNACCOUNTED   ${t.values - sum} (delivered + buffered + not read + dropped + lost ≠ values)`);
  for (const g of t.lostGaps) lines.push(`  lost: counter ${g.counter} values ${g.from}..${g.to} (published from ${iso(g.before)}; the value before it at ${iso(g.after)})`);
  for (const r of t.duplicateSamples) lines.push(`  duplicate: counter ${r.counter} value ${r.v} at ${iso(r.t)}`);
  return lines.join("\n");
}

const iso = (ms: number) => (Number.isFinite(ms) ? new Date(ms).toISOString() : "the end");

/** Whether the run passes: nothing lost, nothing twice, nothing unaccounted for. */
export function passed(t: Tally): boolean {
  return t.lost === 0 && t.duplicates === 0 && t.delivered + t.buffered + t.notRead + t.dropped + t.lost === t.values;
}
