/**
 * How hard the sender may press the cloud right now. It tells "some requests fail" from "the
 * cloud is down", because real clouds behind load balancers answer a few 503s all the time, and
 * pausing every request for each of them stalls the uplink far below what the machines produce.
 *
 * - **Window (AIMD).** At most `limit()` requests count as in flight. A success opens the window
 *   by one, up to `concurrency`; a failure halves it (once per round: requests that were already
 *   in flight when it was cut do not cut it again). The window starts at 1: a connector that has
 *   just started does not know whether the cloud is up.
 * - **Down.** `DOWN_AFTER` failures in a row with no success between them mean the cloud is down
 *   (or unreachable, or refusing us). Five, not fewer: with a fifth of all requests failing at
 *   random, three in a row come once in about a hundred requests, and each false alarm would
 *   stall the uplink for a second or more; five in a row come once in about three thousand. Then one request at a time, a probe, and between probes a
 *   shared pause: capped exponential backoff with full jitter, or the Retry-After of the failure
 *   if that is longer. The first success ends it.
 * - **Deadline.** Each request must finish (headers and body) within `deadlineMs()`: four times
 *   a slow recent success (the 90th percentile of the last 32), at least `minDeadlineMs`, at
 *   most `requestTimeoutMs`. A
 *   response that trickles in is cut off there rather than at the request timeout. The deadline
 *   doubles with each earlier attempt of the same batch, so a batch that needs longer than the
 *   others still gets through, and while the cloud is down with each probe, so a cloud that has
 *   become slow, not broken, is reached again.
 * - **Overdue.** A request that has taken twice as long as a slow recent success (and at
 *   least 100 ms) is presumed stuck and no longer holds the window: one response that trickles
 *   in must not hold up the others. It waits out its deadline beside them (the sender allows
 *   `concurrency` such requests beside `concurrency` live ones). While down, the one probe
 *   always counts.
 *
 * A failed batch's own retry delay is the sender's business; this only paces the cloud as a whole.
 */
import { backoff } from "../backoff.ts";
import type { RetryOptions } from "./retry.ts";

/** Failures in a row, without a success between them, that mean the cloud is down. */
export const DOWN_AFTER = 5;
const DEADLINE_FACTOR = 4;
const OVERDUE_FACTOR = 2;
/** Below this, the jitter of a busy event loop would make ordinary requests look overdue. */
const MIN_OVERDUE_MS = 100;
const SAMPLES = 32;

export interface PacerOptions {
  /** Most requests in flight. */
  concurrency: number;
  /** Hard upper bound of any request's deadline. */
  requestTimeoutMs: number;
  /** Lower bound of a request's deadline. */
  minDeadlineMs: number;
  retry: Required<RetryOptions>;
  random: () => number;
}

export class Pacer {
  readonly #o: PacerOptions;
  #window = 1;
  #failures = 0;
  /** When the window was last cut; failures of requests started before then do not cut it again. */
  #cutAt = Number.NEGATIVE_INFINITY;
  #pauseUntil = 0;
  /** Durations of the last successful requests, a ring of SAMPLES. */
  readonly #durations: number[] = [];
  #next = 0;
  /**
   * How long a slow success takes: the 90th percentile of the recent ones, not the slowest, so
   * that one drip that finished inside its deadline cannot lift every deadline after it (and
   * then let the next drips finish too): after a 7 s drip had finished, every stuck request
   * would hold the window for 14 s. Worked out once per success, read on every loop pass.
   */
  #slowMs = 0;

  constructor(options: PacerOptions) {
    this.#o = options;
  }

  /** Failures since the last success. */
  get failures(): number {
    return this.#failures;
  }

  get down(): boolean {
    return this.#failures >= DOWN_AFTER;
  }

  /** Requests that may count as in flight now. */
  limit(): number {
    return this.down ? 1 : this.#window;
  }

  /** How long no request may start, 0 when one may. */
  pauseMs(now: number): number {
    return Math.max(0, this.#pauseUntil - now);
  }

  /** The deadline of a request that starts now, for a batch that has failed `attempts` times before. */
  deadlineMs(attempts = 0): number {
    const base = Math.max(this.#o.minDeadlineMs, DEADLINE_FACTOR * this.#slowMs);
    const probe = this.down ? this.#failures - DOWN_AFTER + 1 : 0;
    return Math.min(this.#o.requestTimeoutMs, base * 2 ** Math.min(Math.max(probe, attempts), 20));
  }

  /** After how long in flight a request no longer holds the window; Infinity while down or before the first success. */
  overdueMs(): number {
    if (this.down || this.#durations.length === 0) return Number.POSITIVE_INFINITY;
    return Math.max(MIN_OVERDUE_MS, OVERDUE_FACTOR * this.#slowMs);
  }

  /** A request was acknowledged after `durationMs`. */
  succeeded(durationMs: number): void {
    this.answered();
    this.#window = Math.min(this.#o.concurrency, this.#window + 1);
    this.#durations[this.#next] = durationMs;
    this.#next = (this.#next + 1) % SAMPLES;
    const sorted = [...this.#durations].sort((a, b) => a - b);
    this.#slowMs = sorted[Math.min(sorted.length - 1, Math.floor(0.9 * sorted.length))]!;
  }

  /** The cloud gave a real answer that acknowledges nothing (413, a rejection): it is up. */
  answered(): void {
    this.#failures = 0;
    this.#pauseUntil = 0;
  }

  /**
   * A request that started at `startedAt` failed at `now`; `retryAfterMs` is what the cloud asked
   * for, if anything. Returns true when the cloud is now considered down.
   */
  failed(startedAt: number, now: number, retryAfterMs: number | undefined): boolean {
    this.#failures++;
    if (startedAt >= this.#cutAt) {
      this.#window = Math.max(1, Math.floor(this.#window / 2));
      this.#cutAt = now;
    }
    if (!this.down) return false;
    const delay = Math.max(retryAfterMs ?? 0, backoff(this.#failures - DOWN_AFTER + 1, this.#o.retry, this.#o.random));
    this.#pauseUntil = Math.max(this.#pauseUntil, now + delay);
    return true;
  }
}
