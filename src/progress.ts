/**
 * Progress of a long operation (subscribing many items, draining a large backlog, downloading an
 * update): a bar redrawn on a terminal, otherwise a log line (event `progress`) at most every
 * `everyMs` with the percent and an estimate of the time left, and one when it ends. Lines, not a
 * bar, wherever a log collector reads the output: a bar's carriage returns would be noise there.
 */
import type { Logger } from "./log.ts";

export interface ProgressOptions {
  /** What is under way, e.g. "saw-1: subscribing"; it starts each line. */
  label: string;
  total: number;
  /** The unit of done and total in the message, e.g. "items", "values", "bytes". */
  unit: string;
  logger: Logger;
  /** Fields every line carries besides the counts (e.g. the machine). */
  fields?: Record<string, unknown>;
  /** A terminal gets the bar; anything else (or nothing) gets log lines. Default: process.stderr. */
  tty?: { isTTY?: boolean; columns?: number; write(text: string): unknown };
  /** Milliseconds between log lines. Default 10 s. */
  everyMs?: number;
  now?: () => number;
}

const BAR_REDRAW_MS = 200;
const BAR_WIDTH = 30;

export class Progress {
  readonly #o: ProgressOptions;
  readonly #now: () => number;
  readonly #startedAt: number;
  readonly #bar: boolean;
  #done = 0;
  #shownAt: number;
  #ended = false;

  constructor(options: ProgressOptions) {
    this.#o = options;
    this.#now = options.now ?? (() => performance.now());
    this.#startedAt = this.#now();
    this.#shownAt = this.#startedAt;
    this.#bar = (options.tty ?? process.stderr).isTTY === true;
  }

  get done(): number {
    return this.#done;
  }

  /** Sets how much is done (it never goes back). */
  set(done: number): void {
    if (this.#ended) return;
    this.#done = Math.min(this.#o.total, Math.max(this.#done, done));
    const now = this.#now();
    if (now - this.#shownAt < (this.#bar ? BAR_REDRAW_MS : (this.#o.everyMs ?? 10_000))) return;
    this.#shownAt = now;
    this.#show(now);
  }

  add(n: number): void {
    this.set(this.#done + n);
  }

  /** The end: complete, or stopped short (`outcome` says why, e.g. "stopped", "failed"). */
  end(outcome = "done"): void {
    if (this.#ended) return;
    this.#ended = true;
    const seconds = Math.round((this.#now() - this.#startedAt) / 100) / 10;
    const { label, total, unit } = this.#o;
    if (this.#bar) this.#tty().write("\r\x1b[2K");
    this.#o.logger.info({ ...this.#o.fields, event: "progress", operation: label, outcome, done: this.#done, total, seconds }, `${label}: ${outcome}, ${this.#done} of ${total} ${unit} in ${seconds} s`);
  }

  #tty(): NonNullable<ProgressOptions["tty"]> {
    return this.#o.tty ?? process.stderr;
  }

  #show(now: number): void {
    const { label, total, unit } = this.#o;
    const fraction = total > 0 ? this.#done / total : 1;
    const percent = Math.floor(fraction * 100);
    const elapsed = now - this.#startedAt;
    // the rate so far: steady enough for a backlog or a download, and needs no state
    const etaSeconds = this.#done > 0 ? Math.round((elapsed * (total - this.#done)) / this.#done / 1000) : null;
    const eta = etaSeconds === null ? "time left unknown" : `about ${formatSeconds(etaSeconds)} left`;
    if (this.#bar) {
      const filled = Math.round(fraction * BAR_WIDTH);
      const line = `${label} [${"#".repeat(filled)}${"-".repeat(BAR_WIDTH - filled)}] ${percent}% ${this.#done}/${total} ${unit}, ${eta}`;
      this.#tty().write(`\r\x1b[2K${line.slice(0, (this.#tty().columns ?? 120) - 1)}`);
      return;
    }
    this.#o.logger.info({ ...this.#o.fields, event: "progress", operation: label, done: this.#done, total, percent, etaSeconds }, `${label}: ${percent}% (${this.#done} of ${total} ${unit}), ${eta}`);
  }
}

export function formatSeconds(s: number): string {
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/**
 * A backlog going out (after an outage): its progress starts when an acknowledgement finds `min`
 * values or more waiting, counts what left since then, and ends once less than a tenth of `min`
 * is left. New values arriving meanwhile only slow it down.
 */
export class BacklogProgress {
  readonly #o: Omit<ProgressOptions, "total"> & { min: number };
  #run: { progress: Progress; start: number } | null = null;

  constructor(options: Omit<ProgressOptions, "total"> & { min: number }) {
    this.#o = options;
  }

  observe(backlog: number): void {
    const run = this.#run;
    if (!run) {
      if (backlog >= this.#o.min) this.#run = { progress: new Progress({ ...this.#o, total: backlog }), start: backlog };
      return;
    }
    run.progress.set(run.start - backlog);
    if (backlog < this.#o.min / 10) this.stop("done");
  }

  /** Ends a progress under way (e.g. "stopped" when the connector stops). */
  stop(outcome: string): void {
    this.#run?.progress.end(outcome);
    this.#run = null;
  }
}
