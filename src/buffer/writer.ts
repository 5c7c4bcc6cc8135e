/**
 * Group commit in front of the durable buffer.
 *
 * Every commit of the buffer ends in an fsync, and `node:sqlite` runs it on the event loop,
 * which also reads the OPC UA server's publish responses and sends the next publish requests.
 * On a fast disk an fsync takes well under a millisecond and each write is committed at once.
 * On a slow one (an edge PC's eMMC or SD card: 5 to 20 ms) one commit per publish response
 * would keep the event loop busy for most of every second, the publish requests would go out
 * late, and the server's queues would overflow. So commits take at most a fixed share of the
 * time (`dutyCycle`): after a commit that took c ms the next one waits c·(1−d)/d ms, and what
 * arrives meanwhile is committed together, in one transaction with one fsync.
 *
 * While a write waits for its commit it is in memory only: a SIGKILL in that window (zero on
 * a fast disk, 40 ms on a disk whose fsync takes 10 ms) loses it, like the values the OPC UA
 * server had not yet sent. A clean stop commits everything first (`commit()`).
 *
 * When commits fail (disk full, I/O error), writes stay pending and the commit is retried with
 * backoff; past `maxPendingItems` the oldest pending messages are dropped and counted as
 * `buffer_full`, in the buffer's own counters once a commit succeeds again.
 */
import { backoff } from "../backoff.ts";
import { DurationHistogram, type DurationSummary } from "../durations.ts";
import { KerfError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { itemCount, type Message } from "../message.ts";
import { chunkMessages } from "../uplink/batches.ts";
import type { DurableBuffer } from "./buffer.ts";

export interface WriterOptions {
  buffer: Pick<DurableBuffer, "appendMany">;
  /** Items per stored batch at most: a batch is what one request to the cloud carries. */
  maxItems: number;
  logger: Logger;
  /** Called after each successful commit (the sender looks for new batches). */
  onCommit?: () => void;
  /** Share of wall time that commits may take, 0 < d ≤ 1. Default 0.2. */
  dutyCycle?: number;
  /** A write waits at most this long for its commit, whatever the last one took. Default 1 s. */
  maxDelayMs?: number;
  /** Beyond this many pending items (commits failing) the oldest are dropped. Default 200,000. */
  maxPendingItems?: number;
  /** Milliseconds, monotonic; tests give a clock of their own. */
  now?: () => number;
}

export interface WriterHealth {
  /** Items waiting for their commit. */
  pendingItems: number;
  /** Duration of the last successful commit, ms. */
  lastCommitMs: number | null;
  lastCommitAt: number | null;
  /** Commits failed in a row; 0 while the buffer is writable. */
  failures: number;
  lastError: string | null;
  /** Items dropped because they could not be committed (also counted in the buffer once it is writable). */
  droppedItems: number;
}

const RETRY = { initialDelayMs: 100, maxDelayMs: 5_000 };
const ERROR_LOG_INTERVAL_MS = 10_000;

export class BufferWriter {
  readonly #o: Required<Omit<WriterOptions, "onCommit">> & { onCommit: () => void };
  #pending: Message[] = [];
  #pendingItems = 0;
  /** When each pending write came, for the stage times. */
  #writeTimes: number[] = [];
  readonly #waitMs = new DurationHistogram();
  readonly #commitMs = new DurationHistogram();
  /** No commit starts before this time (duty cycle or retry backoff). */
  #nextAt = 0;
  #timer: NodeJS.Timeout | null = null;
  /** Dropped since the last successful commit; recorded in the buffer with the next one. */
  #unrecorded = 0;
  #lastErrorLogAt = Number.NEGATIVE_INFINITY;
  #health: WriterHealth = { pendingItems: 0, lastCommitMs: null, lastCommitAt: null, failures: 0, lastError: null, droppedItems: 0 };

  constructor(options: WriterOptions) {
    const dutyCycle = options.dutyCycle ?? 0.2;
    if (!(dutyCycle > 0 && dutyCycle <= 1)) throw new KerfError("INTERNAL", `dutyCycle must be in (0, 1], got ${dutyCycle}`);
    this.#o = {
      buffer: options.buffer,
      maxItems: options.maxItems,
      logger: options.logger,
      onCommit: options.onCommit ?? (() => undefined),
      dutyCycle,
      maxDelayMs: options.maxDelayMs ?? 1_000,
      maxPendingItems: options.maxPendingItems ?? 200_000,
      now: options.now ?? (() => performance.now()),
    };
  }

  /** Queues messages for the buffer; commits now when the duty cycle allows, else soon. */
  write(messages: readonly Message[]): void {
    for (const m of messages) this.#pending.push(m);
    this.#pendingItems += itemCount(messages);
    this.#writeTimes.push(this.#o.now());
    if (this.#pendingItems > this.#o.maxPendingItems) this.#shed();
    const wait = this.#nextAt - this.#o.now();
    if (wait <= 0 && this.#health.failures === 0) this.commit();
    else this.#arm(Math.min(Math.max(wait, 0), this.#o.maxDelayMs));
  }

  /** Commits everything pending now; false when the buffer refused it (it stays pending). */
  commit(): boolean {
    this.#disarm();
    if (this.#pending.length === 0) return true;
    const batches = chunkMessages(this.#pending, this.#o.maxItems);
    const started = this.#o.now();
    try {
      this.#o.buffer.appendMany(batches, { dropped: this.#unrecorded });
    } catch (err) {
      this.#failed(err as Error);
      return false;
    }
    const now = this.#o.now();
    const took = now - started;
    for (const t of this.#writeTimes) this.#waitMs.add(started - t);
    this.#commitMs.add(took);
    this.#writeTimes = [];
    if (this.#health.failures > 0) this.#o.logger.info({ failures: this.#health.failures }, "the buffer is writable again");
    this.#pending = [];
    this.#pendingItems = 0;
    this.#unrecorded = 0;
    this.#nextAt = now + (took * (1 - this.#o.dutyCycle)) / this.#o.dutyCycle;
    this.#health = { ...this.#health, lastCommitMs: Math.round(took * 100) / 100, lastCommitAt: Date.now(), failures: 0, lastError: null };
    this.#o.onCommit();
    return true;
  }

  health(): WriterHealth {
    return { ...this.#health, pendingItems: this.#pendingItems };
  }

  /** How long writes waited for their commit and how long commits took (fsync included), since the last call. */
  takeStages(): { wait: DurationSummary; commit: DurationSummary } {
    const stages = { wait: this.#waitMs.summary(), commit: this.#commitMs.summary() };
    this.#waitMs.reset();
    this.#commitMs.reset();
    return stages;
  }

  /** Stops the timer; pending writes are lost unless `commit()` ran first. */
  close(): void {
    this.#disarm();
  }

  #failed(err: Error): void {
    const failures = this.#health.failures + 1;
    this.#health = { ...this.#health, failures, lastError: err.message };
    const now = this.#o.now();
    if (now - this.#lastErrorLogAt >= ERROR_LOG_INTERVAL_MS) {
      this.#lastErrorLogAt = now;
      this.#o.logger.error({ failures, pendingItems: this.#pendingItems, code: (err as { code?: string }).code }, `cannot write to the buffer: ${err.message}; keeping ${this.#pendingItems} items in memory and retrying`);
    }
    this.#nextAt = now + backoff(failures, RETRY);
    this.#arm(this.#nextAt - now);
  }

  /** Drops the oldest pending messages until the rest fit (the disk has refused them for a while). */
  #shed(): void {
    let dropped = 0;
    while (this.#pendingItems > this.#o.maxPendingItems && this.#pending.length > 1) {
      const n = itemCount([this.#pending.shift()!]);
      this.#pendingItems -= n;
      dropped += n;
    }
    if (dropped === 0) return;
    // the newest writes are the ones left (stage times only)
    this.#writeTimes = this.#writeTimes.slice(-this.#pending.length);
    this.#unrecorded += dropped;
    this.#health.droppedItems += dropped;
    this.#o.logger.error({ reason: "buffer_full", items: dropped, totalDroppedItems: this.#health.droppedItems }, `the buffer has not been writable for a while: dropped the ${dropped} oldest values waiting for it`);
  }

  #arm(ms: number): void {
    if (this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.commit();
    }, ms);
  }

  #disarm(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }
}
