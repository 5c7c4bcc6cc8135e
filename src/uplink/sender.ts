/**
 * The uplink loop: read batches from the durable buffer, POST them to the cloud, and act on
 * each outcome as the retry policy (retry.ts) says. A batch leaves the buffer only when the
 * cloud has answered 200 (acknowledged), or when it is dead-lettered (rejected, too large).
 *
 * Backoff is shared: one failed request pauses all new requests, because when the cloud or
 * the network is down every request would fail alike, and hammering it helps nobody. Until a
 * request succeeds again, only one is in flight at a time.
 */
import { EventEmitter } from "node:events";
import { promisify } from "node:util";
import { gzip as gzipCallback } from "node:zlib";
import { request, type Dispatcher } from "undici";
import type { Logger } from "../log.ts";
import { itemCount, type Message } from "../types.ts";
import { toUplinkError } from "./client.ts";
import { backoff, classify, defaultRetryOptions, type Decision, type RetryOptions } from "./retry.ts";

const gzip = promisify(gzipCallback);
const CLOSE_BRACE = Buffer.from("}");

export interface StoredBatch {
  id: number;
  /** `messages` as a JSON array, UTF-8: sent as it is. */
  json: Buffer;
  readonly messages: Message[];
  items: number;
  bytes: number;
  createdAt: number;
}

/** What the sender needs from the durable buffer (src/buffer/buffer.ts implements it). */
export interface BatchStore {
  readonly epoch: string;
  next(limit: number, exclude?: ReadonlySet<number>): StoredBatch[];
  ack(id: number): void;
  replace(id: number, parts: Message[][]): number[];
  drop(id: number, reason: "buffer_full" | "rejected" | "too_large", detail: string): void;
}

/** The cloud's answer to an acknowledged batch. */
export interface AckResponse {
  status: number;
  accepted?: number;
  duplicate?: boolean;
}

export interface SenderOptions {
  store: BatchStore;
  agent: Dispatcher;
  /** Base URL of the cloud; requests go to {url}/v1/ingest. */
  url: string;
  instance: string;
  /** Requests in flight at most. Default 4. */
  concurrency?: number;
  /** Whole request (headers and body) must complete within this. Default 30 s. */
  requestTimeoutMs?: number;
  retry?: Partial<RetryOptions>;
  logger: Logger;
  /** A stored batch with more items is split before it is sent. Default: no limit. */
  maxItemsPerRequest?: number;
  /** How often an idle sender looks for new batches when nobody calls wake(). Default 1 s. */
  pollIntervalMs?: number;
  /** Source of randomness for the backoff jitter; tests make it deterministic. */
  random?: () => number;
}

export interface SenderHealth {
  lastAckAt: number | null;
  lastErrorAt: number | null;
  lastError: string | null;
  consecutiveFailures: number;
}

export interface SenderStats {
  sentItems: number;
  ackedItems: number;
  retries: number;
  rejectedItems: number;
  tooLargeItems: number;
  splits: number;
}

export interface SenderEvents {
  acked: [batch: StoredBatch, response: AckResponse];
  dropped: [batch: StoredBatch, reason: "rejected" | "too_large", detail: string];
}

const maxResponseBytes = 64 * 1024;

export class Sender extends EventEmitter<SenderEvents> {
  readonly #o: Required<Omit<SenderOptions, "retry" | "maxItemsPerRequest">> & { maxItemsPerRequest: number };
  readonly #retry: Required<RetryOptions>;
  readonly #endpoint: string;
  readonly #host: string;
  readonly #log: Logger;
  readonly #inFlight = new Map<number, Promise<void>>();
  #abort = new AbortController();
  #running = false;
  #loop: Promise<void> | null = null;
  #notify: (() => void) | null = null;
  /** No new request starts before this time (shared backoff). */
  #pauseUntil = 0;
  /** Failed rounds in a row; drives the backoff exponent. Requests that failed together count once. */
  #backoffAttempt = 0;
  #lastFailureStart = -1;
  #health: SenderHealth = { lastAckAt: null, lastErrorAt: null, lastError: null, consecutiveFailures: 0 };
  #stats: SenderStats = { sentItems: 0, ackedItems: 0, retries: 0, rejectedItems: 0, tooLargeItems: 0, splits: 0 };

  constructor(options: SenderOptions) {
    super();
    this.#o = {
      store: options.store,
      agent: options.agent,
      url: options.url,
      instance: options.instance,
      concurrency: Math.max(1, options.concurrency ?? 4),
      requestTimeoutMs: options.requestTimeoutMs ?? 30_000,
      logger: options.logger,
      maxItemsPerRequest: options.maxItemsPerRequest ?? Number.POSITIVE_INFINITY,
      pollIntervalMs: options.pollIntervalMs ?? 1000,
      random: options.random ?? Math.random,
    };
    this.#retry = { ...defaultRetryOptions, ...options.retry };
    this.#endpoint = `${options.url.replace(/\/+$/, "")}/v1/ingest`;
    this.#host = new URL(this.#endpoint).host;
    this.#log = options.logger;
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#abort = new AbortController();
    this.#loop = this.#run();
  }

  /**
   * Stops taking batches, waits for the requests in flight at most `graceMs` (default
   * requestTimeoutMs), then aborts the rest: their batches stay buffered and go out after a restart.
   */
  async stop(graceMs = this.#o.requestTimeoutMs): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    this.#wakeLoop();
    await this.#loop;
    const pending = Promise.allSettled(this.#inFlight.values());
    const within = async (ms: number) => {
      let timer: NodeJS.Timeout | undefined;
      const done = await Promise.race([pending.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)))]);
      clearTimeout(timer);
      return done;
    };
    if (await within(graceMs)) return;
    this.#abort.abort(new Error("sender stopped"));
    // An aborted request settles at once; this bound only guards against one that does not.
    await within(1_000);
  }

  /** Waits until the store has nothing left to send, or the time is up; true if it drained. */
  async drain(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.#inFlight.size === 0 && this.#o.store.next(1).length === 0) return true;
      if (Date.now() >= deadline) return false;
      this.#wakeLoop();
      await new Promise((r) => setTimeout(r, Math.min(50, Math.max(1, deadline - Date.now()))));
    }
  }

  /** New batches were appended: look now rather than at the next poll. Backoff still applies. */
  wake(): void {
    this.#wakeLoop();
  }

  health(): SenderHealth {
    return { ...this.#health };
  }

  stats(): SenderStats {
    return { ...this.#stats };
  }

  async #run(): Promise<void> {
    while (this.#running) {
      const pause = this.#pauseUntil - Date.now();
      if (pause > 0) {
        await this.#wait(pause);
        continue;
      }
      // After a failure only one request goes out at a time, a probe, until one succeeds: a cloud
      // that is down sees one connector request per backoff period, not `concurrency` of them.
      const limit = this.#health.consecutiveFailures > 0 ? 1 : this.#o.concurrency;
      const free = limit - this.#inFlight.size;
      if (free <= 0) {
        await this.#wait(this.#o.pollIntervalMs);
        continue;
      }
      let batches: StoredBatch[];
      try {
        batches = this.#o.store.next(free, new Set(this.#inFlight.keys()));
      } catch (err) {
        this.#log.error({ err }, "cannot read batches from the buffer; retrying");
        await this.#wait(this.#o.pollIntervalMs);
        continue;
      }
      if (batches.length === 0) {
        await this.#wait(this.#o.pollIntervalMs);
        continue;
      }
      for (const batch of batches) {
        const done = this.#handle(batch)
          .catch((err) => this.#log.error({ err, batch: batch.id }, "uplink: unexpected failure while handling a batch"))
          .finally(() => {
            this.#inFlight.delete(batch.id);
            this.#wakeLoop();
          });
        this.#inFlight.set(batch.id, done);
      }
    }
  }

  async #handle(batch: StoredBatch): Promise<void> {
    if (batch.items > this.#o.maxItemsPerRequest) {
      this.#split(batch, `it has ${batch.items} items, more than maxItemsPerRequest ${this.#o.maxItemsPerRequest}`);
      return;
    }
    const startedAt = Date.now();
    const { decision, status, body } = await this.#post(batch);
    switch (decision.action) {
      case "success":
        return this.#acked(batch, status, body);
      case "retry":
        return this.#failed(batch, decision, startedAt);
      case "split":
        this.#split(batch, decision.reason);
        return;
      case "reject": {
        const detail = `${status} ${body.slice(0, 200)}`.trim();
        this.#drop(batch, "rejected", detail);
        this.#health.lastError = `batch ${batch.id} rejected: ${detail}`;
        this.#health.lastErrorAt = Date.now();
        return;
      }
    }
  }

  async #post(batch: StoredBatch): Promise<{ decision: Decision; status: number; body: string }> {
    // The stored JSON goes out as it is: parsing and re-serialising 100k items/s would cost more than the rest of the uplink.
    const head = Buffer.from(`{"connector":${JSON.stringify(this.#o.instance)},"batch":${batch.id},"messages":`);
    const payload = await gzip(Buffer.concat([head, batch.json, CLOSE_BRACE]));
    this.#stats.sentItems += batch.items;
    const signal = AbortSignal.any([this.#abort.signal, AbortSignal.timeout(this.#o.requestTimeoutMs)]);
    try {
      const res = await request(this.#endpoint, {
        dispatcher: this.#o.agent,
        method: "POST",
        headers: {
          "content-type": "application/json",
          "content-encoding": "gzip",
          "idempotency-key": `${this.#o.instance}:${this.#o.store.epoch}:${batch.id}`,
        },
        body: payload,
        signal,
        headersTimeout: this.#o.requestTimeoutMs,
        bodyTimeout: this.#o.requestTimeoutMs,
      });
      const body = await readBounded(res.body);
      return { decision: classify({ status: res.statusCode, headers: res.headers }, { maxRetryAfterMs: this.#retry.maxRetryAfterMs }), status: res.statusCode, body };
    } catch (err) {
      const error = toUplinkError(err, this.#host);
      return { decision: classify({ error }), status: 0, body: "" };
    }
  }

  #acked(batch: StoredBatch, status: number, body: string): void {
    this.#o.store.ack(batch.id);
    this.#backoffAttempt = 0;
    this.#health.consecutiveFailures = 0;
    this.#health.lastAckAt = Date.now();
    this.#stats.ackedItems += batch.items;
    const response: AckResponse = { status };
    try {
      const parsed = JSON.parse(body) as { accepted?: unknown; duplicate?: unknown };
      if (typeof parsed.accepted === "number") response.accepted = parsed.accepted;
      if (typeof parsed.duplicate === "boolean") response.duplicate = parsed.duplicate;
    } catch {
      // 200 acknowledges whatever the body says; the counts are informative only.
      this.#log.debug({ batch: batch.id }, "cloud acknowledged with a body that is not JSON");
    }
    this.emit("acked", batch, response);
  }

  #failed(batch: StoredBatch, decision: Extract<Decision, { action: "retry" }>, startedAt: number): void {
    if (this.#abort.signal.aborted) return; // cut short by stop(): the batch stays buffered, nothing to report
    const now = Date.now();
    this.#stats.retries++;
    this.#health.consecutiveFailures++;
    this.#health.lastErrorAt = now;
    this.#health.lastError = decision.reason;
    // Requests that were already in flight when an earlier one failed belong to the same round.
    if (startedAt > this.#lastFailureStart) {
      this.#backoffAttempt++;
      this.#lastFailureStart = now;
    }
    const delayMs = decision.delayMs ?? backoff(this.#backoffAttempt, this.#retry, this.#o.random);
    this.#pauseUntil = Math.max(this.#pauseUntil, now + delayMs);
    this.#log[decision.level]({ batch: batch.id, items: batch.items, delayMs, attempt: this.#backoffAttempt, reason: decision.reason }, "uplink: batch not delivered; retrying after backoff");
  }

  /** Replaces a batch by its two halves; one that cannot be cut is dead-lettered as too large. */
  #split(batch: StoredBatch, reason: string): void {
    const parts = halve(batch.messages);
    if (parts === null) {
      this.#drop(batch, "too_large", `a single item is too large for the cloud (${reason})`);
      return;
    }
    const ids = this.#o.store.replace(batch.id, parts);
    this.#stats.splits++;
    this.#log.info({ batch: batch.id, items: batch.items, into: ids, reason }, "uplink: split batch");
  }

  #drop(batch: StoredBatch, reason: "rejected" | "too_large", detail: string): void {
    this.#o.store.drop(batch.id, reason, detail);
    if (reason === "rejected") this.#stats.rejectedItems += batch.items;
    else this.#stats.tooLargeItems += batch.items;
    this.#log.error({ batch: batch.id, items: batch.items, reason, detail }, "uplink: batch dead-lettered");
    this.emit("dropped", batch, reason, detail);
  }

  #wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#notify = done;
    });
  }

  #wakeLoop(): void {
    const notify = this.#notify;
    this.#notify = null;
    notify?.();
  }
}

/**
 * Two halves of a batch: by messages if there are several, else a single data message by its
 * items. Null when there is nothing left to cut (one item, event or status).
 */
export function halve(messages: readonly Message[]): [Message[], Message[]] | null {
  if (messages.length > 1) {
    // Cut where the item counts balance, so a batch of one huge and many small messages still halves its size.
    const total = itemCount(messages);
    let acc = 0;
    let cut = 1;
    for (let i = 0; i < messages.length - 1; i++) {
      acc += itemCount([messages[i]!]);
      cut = i + 1;
      if (acc * 2 >= total) break;
    }
    return [messages.slice(0, cut), messages.slice(cut)];
  }
  const only = messages[0];
  if (only?.kind === "data" && only.items.length > 1) {
    const mid = Math.ceil(only.items.length / 2);
    return [[{ ...only, items: only.items.slice(0, mid) }], [{ ...only, items: only.items.slice(mid) }]];
  }
  return null;
}

async function readBounded(body: Dispatcher.ResponseData["body"]): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const buf = chunk as Buffer;
    chunks.push(buf);
    size += buf.length;
    if (size >= maxResponseBytes) {
      // The answer is informative only; never let a cloud make us buffer an endless body.
      body.destroy();
      break;
    }
  }
  return Buffer.concat(chunks).toString("utf8").slice(0, maxResponseBytes);
}
