/**
 * The uplink loop: read batches from the durable buffer, POST them to the cloud, and act on
 * each outcome as the retry policy (retry.ts) says. A batch leaves the buffer only when the
 * cloud has answered 200 (acknowledged), or when it is dead-lettered (rejected, too large).
 *
 * A failed batch waits out its own backoff (or the cloud's Retry-After) while the others go on,
 * since a cloud behind a load balancer fails some requests all the time. How many requests may
 * be in flight, when the cloud counts as down (then one probe at a time, with a shared backoff)
 * and each request's deadline are decided by the Pacer (pacer.ts).
 */
import { EventEmitter } from "node:events";
import { gzipSync } from "node:zlib";
import { request, type Dispatcher } from "undici";
import { DurationHistogram, type DurationSummary } from "../durations.ts";
import type { Secret } from "../config/secrets.ts";
import type { Logger } from "../log.ts";
import type { BatchStore, DropReason, StoredBatch } from "../message.ts";
import { envelope, halve, splitByItems } from "./batches.ts";
import { toUplinkError } from "./errors.ts";
import { Pacer } from "./pacer.ts";
import { backoff } from "../backoff.ts";
import { classify, defaultRetryOptions, type Decision, type RetryOptions } from "./retry.ts";

/**
 * Level 1 on the event loop: 0.1 ms for a 1,000-item batch and 3 % larger than level 6, which
 * takes three times as long. Node's asynchronous gzip queues on the libuv thread pool: it took
 * 6–8 ms a batch at the median, and on a machine busy with other work its p99 was 490 ms.
 */
const GZIP = { level: 1 };

/** The cloud's answer to an acknowledged batch. */
export interface AckResponse {
  status: number;
  accepted?: number;
  duplicate?: boolean;
}

export interface SenderOptions {
  store: BatchStore;
  /** The way to the cloud: the Transport, or decoration composed onto it. */
  transport: Dispatcher;
  /** Base URL of the cloud; requests go to {url}/v1/ingest. */
  url: string;
  instance: string;
  /** Requests in flight at most, besides as many stuck ones waiting out their deadlines (pacer.ts). Default 4. */
  concurrency?: number;
  /** Whole request (headers and body) must complete within this, whatever the deadline below. Default 30 s. */
  requestTimeoutMs?: number;
  /** Lower bound of a request's deadline, which follows the cloud's recent response times (pacer.ts). Default 1 s. */
  minDeadlineMs?: number;
  retry?: Partial<RetryOptions>;
  logger: Logger;
  /** A stored batch with more items is split before it is sent, and merged batches stay within it. Default: no limit. */
  maxItemsPerRequest?: number;
  /** The same for the batch's JSON bytes (before compression). Default 1 MiB. */
  maxBytesPerRequest?: number;
  /** How often an idle sender looks for new batches when nobody calls wake(). Default 1 s. */
  pollIntervalMs?: number;
  /** Source of randomness for the backoff jitter; tests make it deterministic. */
  random?: () => number;
  /** Bearer tokens for each request (cloud.auth); without it, requests carry none. */
  tokens?: TokenSource | undefined;
}

/** What the sender needs of the token client (tokens.ts). */
export interface TokenSource {
  token(): Promise<Secret>;
  /** The cloud answered 401 to `rejected`: a new token (one request, shared by concurrent callers). */
  renew(rejected: Secret): Promise<Secret>;
}

export interface SenderHealth {
  lastAckAt: number | null;
  lastErrorAt: number | null;
  lastError: string | null;
  /** The code of the last error: a KerfError's (UPLINK_NETWORK, UPLINK_TLS, ...) or HTTP_<status>. */
  lastErrorCode: string | null;
  consecutiveFailures: number;
}

export interface SenderStats {
  sentItems: number;
  ackedItems: number;
  retries: number;
  rejectedItems: number;
  tooLargeItems: number;
  splits: number;
  /** Answers 401: each is followed by one token renewal and one retry. */
  unauthorized: number;
}

export interface SenderEvents {
  acked: [batch: StoredBatch, response: AckResponse];
  dropped: [batch: StoredBatch, reason: Exclude<DropReason, "buffer_full">, detail: string];
  /** A request was answered (or failed): its time without compression, and what the retry policy made of it (the metrics' latency histogram). */
  answered: [ms: number, outcome: Decision["action"]];
}

const maxResponseBytes = 64 * 1024;

interface InFlight {
  done: Promise<void>;
  startedAt: number;
}

export class Sender extends EventEmitter<SenderEvents> {
  readonly #o: Required<Omit<SenderOptions, "retry" | "tokens">> & Pick<SenderOptions, "tokens">;
  /** What a merged request may carry; lowered when the cloud answers 413, so halves are not merged again. */
  #mergeLimits: { maxItems: number; maxBytes: number };
  readonly #retry: Required<RetryOptions>;
  readonly #endpoint: string;
  readonly #host: string;
  readonly #log: Logger;
  readonly #inFlight = new Map<number, InFlight>();
  readonly #pacer: Pacer;
  /** Merged batches not yet acknowledged: the item counts of their parts, to take them apart if the cloud rejects them. */
  readonly #mergedParts = new Map<number, number[]>();
  /** Batches that failed while the cloud was up, and when each may go again. */
  readonly #retryAt = new Map<number, { at: number; attempts: number }>();
  #abort = new AbortController();
  #running = false;
  #loop: Promise<void> | null = null;
  #notify: (() => void) | null = null;
  #health: Omit<SenderHealth, "consecutiveFailures"> = { lastAckAt: null, lastErrorAt: null, lastError: null, lastErrorCode: null };
  #stats: SenderStats = { sentItems: 0, ackedItems: 0, retries: 0, rejectedItems: 0, tooLargeItems: 0, splits: 0, unauthorized: 0 };
  /** Where an acknowledged batch's time went: in the buffer before its request, compressing, the request, deleting it. */
  readonly #stages = { queue: new DurationHistogram(), gzip: new DurationHistogram(), request: new DurationHistogram(), ack: new DurationHistogram() };

  constructor(options: SenderOptions) {
    super();
    this.#o = {
      store: options.store,
      transport: options.transport,
      url: options.url,
      instance: options.instance,
      concurrency: Math.max(1, options.concurrency ?? 4),
      requestTimeoutMs: options.requestTimeoutMs ?? 30_000,
      minDeadlineMs: options.minDeadlineMs ?? 1000,
      logger: options.logger,
      maxItemsPerRequest: options.maxItemsPerRequest ?? Number.POSITIVE_INFINITY,
      maxBytesPerRequest: options.maxBytesPerRequest ?? 1024 ** 2,
      pollIntervalMs: options.pollIntervalMs ?? 1000,
      random: options.random ?? Math.random,
      tokens: options.tokens,
    };
    this.#retry = { ...defaultRetryOptions, ...options.retry };
    this.#mergeLimits = { maxItems: this.#o.maxItemsPerRequest, maxBytes: this.#o.maxBytesPerRequest };
    const { concurrency, requestTimeoutMs, minDeadlineMs, random } = this.#o;
    this.#pacer = new Pacer({ concurrency, requestTimeoutMs, minDeadlineMs, retry: this.#retry, random });
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
    const pending = Promise.allSettled([...this.#inFlight.values()].map((f) => f.done));
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
    return { ...this.#health, consecutiveFailures: this.#pacer.failures };
  }

  stats(): SenderStats {
    return { ...this.#stats };
  }

  /** Stage times of the batches acknowledged since the last call. */
  takeStages(): Record<"queue" | "gzip" | "request" | "ack", DurationSummary> {
    const out = { queue: this.#stages.queue.summary(), gzip: this.#stages.gzip.summary(), request: this.#stages.request.summary(), ack: this.#stages.ack.summary() };
    for (const h of Object.values(this.#stages)) h.reset();
    return out;
  }

  async #run(): Promise<void> {
    while (this.#running) {
      const now = Date.now();
      // Only while the cloud is down: one probe per backoff period, not `concurrency` requests.
      const pause = this.#pacer.pauseMs(now);
      if (pause > 0) {
        await this.#wait(pause);
        continue;
      }
      const free = this.#free(now);
      if (free <= 0) {
        await this.#wait(this.#sleepMs(now));
        continue;
      }
      let batches: StoredBatch[];
      try {
        // A backlog leaves in few large requests: what waits is merged up to the request limits.
        const store = this.#o.store;
        batches = store.nextMerged ? store.nextMerged(free, this.#excluded(now), this.#mergeLimits) : store.next(free, this.#excluded(now));
      } catch (err) {
        this.#log.error({ err }, "cannot read batches from the buffer; retrying");
        await this.#wait(this.#o.pollIntervalMs);
        continue;
      }
      if (batches.length === 0) {
        await this.#wait(this.#sleepMs(now));
        continue;
      }
      for (const batch of batches) {
        const done = this.#handle(batch, now)
          .catch((err) => this.#log.error({ err, batch: batch.id }, "uplink: unexpected failure while handling a batch"))
          .finally(() => {
            this.#inFlight.delete(batch.id);
            this.#wakeLoop();
          });
        this.#inFlight.set(batch.id, { done, startedAt: now });
      }
    }
  }

  /**
   * Requests that may start now: the pacer's window less the requests that still hold it. An
   * overdue request is presumed stuck (a drip, a black hole) and waits out its deadline beside
   * the others; at most `concurrency` of them, so stuck requests cannot pile up.
   */
  #free(now: number): number {
    const overdue = this.#pacer.overdueMs();
    let holding = 0;
    for (const f of this.#inFlight.values()) if (now - f.startedAt < overdue) holding++;
    return Math.min(this.#pacer.limit() - holding, 2 * this.#o.concurrency - this.#inFlight.size);
  }

  /** Batches not to take now: those in flight, and those waiting out their own retry delay. */
  #excluded(now: number): Set<number> {
    const ids = new Set(this.#inFlight.keys());
    for (const [id, r] of this.#retryAt) {
      if (r.at > now) ids.add(id);
      // Due long ago and never taken again: the buffer evicted it.
      else if (r.at + this.#retry.maxDelayMs < now) this.#retryAt.delete(id);
    }
    return ids;
  }

  /** How long the loop may sleep before something changes by itself: a retry falls due, a request becomes overdue, the poll. */
  #sleepMs(now: number): number {
    let ms = this.#o.pollIntervalMs;
    for (const r of this.#retryAt.values()) if (r.at > now) ms = Math.min(ms, r.at - now);
    const overdue = this.#pacer.overdueMs();
    for (const f of this.#inFlight.values()) if (now - f.startedAt < overdue) ms = Math.min(ms, f.startedAt + overdue - now);
    return Math.max(1, ms);
  }

  async #handle(batch: StoredBatch, startedAt: number): Promise<void> {
    if (batch.items > this.#o.maxItemsPerRequest) {
      this.#split(batch, `it has ${batch.items} items, more than maxItemsPerRequest ${this.#o.maxItemsPerRequest}`);
      return;
    }
    if (batch.json.length > this.#o.maxBytesPerRequest && batch.items > 1) {
      this.#split(batch, `it has ${batch.json.length} bytes, more than maxBytesPerRequest ${this.#o.maxBytesPerRequest}`);
      return;
    }
    if (batch.parts) this.#mergedParts.set(batch.id, batch.parts);
    this.#o.store.markAttempted?.(batch.id);
    const postStart = performance.now();
    const { decision, status, body, gzipMs, code } = await this.#post(batch);
    this.emit("answered", performance.now() - postStart - gzipMs, decision.action);
    switch (decision.action) {
      case "success": {
        const answeredAt = Date.now();
        this.#acked(batch, status, body, answeredAt - startedAt);
        this.#stages.queue.add(startedAt - batch.createdAt);
        this.#stages.gzip.add(gzipMs);
        this.#stages.request.add(answeredAt - startedAt - gzipMs);
        this.#stages.ack.add(Date.now() - answeredAt);
        return;
      }
      case "retry":
        return this.#failed(batch, decision, startedAt, code);
      case "split":
        this.#pacer.answered();
        this.#learnLimit(batch);
        this.#split(batch, decision.reason);
        return;
      case "reject": {
        this.#pacer.answered();
        const detail = `${status} ${body.slice(0, 200)}`.trim();
        if (this.#unmerge(batch, detail)) return;
        this.#drop(batch, "rejected", detail);
        this.#health.lastError = `batch ${batch.id} rejected: ${detail}`;
        this.#health.lastErrorAt = Date.now();
        this.#health.lastErrorCode = code;
        return;
      }
    }
  }

  async #post(batch: StoredBatch): Promise<{ decision: Decision; status: number; body: string; gzipMs: number; code: string }> {
    const gzipStart = performance.now();
    const payload = gzipSync(envelope(this.#o.instance, batch), GZIP);
    const gzipMs = performance.now() - gzipStart;
    this.#stats.sentItems += batch.items;
    const deadlineMs = this.#pacer.deadlineMs(this.#retryAt.get(batch.id)?.attempts);
    const signal = AbortSignal.any([this.#abort.signal, AbortSignal.timeout(deadlineMs)]);
    try {
      const tokens = this.#o.tokens;
      let token = tokens ? await tokens.token() : undefined;
      let res = await this.#request(batch, payload, signal, deadlineMs, token);
      if (res.statusCode === 401 && tokens && token) {
        // Revoked, expired early, or bound to a certificate just rotated: one new token, one retry.
        // A second 401 goes to the retry policy like any other answer.
        await readBounded(res.body);
        this.#stats.unauthorized++;
        token = await tokens.renew(token);
        res = await this.#request(batch, payload, signal, deadlineMs, token);
      }
      const body = await readBounded(res.body);
      if (res.statusCode === 401) this.#stats.unauthorized++;
      return { decision: classify({ status: res.statusCode, headers: res.headers }, { maxRetryAfterMs: this.#retry.maxRetryAfterMs }), status: res.statusCode, body, gzipMs, code: `HTTP_${res.statusCode}` };
    } catch (err) {
      const error = toUplinkError(err, this.#host);
      return { decision: classify({ error }), status: 0, body: "", gzipMs, code: error.code };
    }
  }

  #request(batch: StoredBatch, payload: Buffer, signal: AbortSignal, deadlineMs: number, token: Secret | undefined): Promise<Dispatcher.ResponseData> {
    return request(this.#endpoint, {
      dispatcher: this.#o.transport,
      method: "POST",
      headers: {
        "content-type": "application/json",
        "content-encoding": "gzip",
        "idempotency-key": `${this.#o.instance}:${this.#o.store.epoch}:${batch.id}`,
        ...(token ? { authorization: `Bearer ${token.reveal()}` } : {}),
      },
      body: payload,
      signal,
      headersTimeout: deadlineMs,
      bodyTimeout: deadlineMs,
    });
  }

  #acked(batch: StoredBatch, status: number, body: string, durationMs: number): void {
    this.#o.store.ack(batch.id);
    this.#mergedParts.delete(batch.id);
    this.#retryAt.delete(batch.id);
    this.#pacer.succeeded(durationMs);
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

  #failed(batch: StoredBatch, decision: Extract<Decision, { action: "retry" }>, startedAt: number, code: string): void {
    if (this.#abort.signal.aborted) return; // cut short by stop(): the batch stays buffered, nothing to report
    const now = Date.now();
    this.#stats.retries++;
    this.#health.lastErrorAt = now;
    this.#health.lastError = decision.reason;
    this.#health.lastErrorCode = code;
    const down = this.#pacer.failed(startedAt, now, decision.delayMs);
    const fields = { batch: batch.id, items: batch.items, failures: this.#pacer.failures, reason: decision.reason };
    if (down) {
      // The pacer's shared pause spaces the probes, oldest batch first; delays per batch would only scatter them.
      this.#retryAt.clear();
      this.#log[decision.level]({ event: "uplink_down", ...fields, delayMs: this.#pacer.pauseMs(now) }, "uplink: batch not delivered and the cloud looks down; one request at a time after backoff");
      return;
    }
    const attempt = (this.#retryAt.get(batch.id)?.attempts ?? 0) + 1;
    const delayMs = decision.delayMs ?? backoff(attempt, this.#retry, this.#o.random);
    this.#retryAt.set(batch.id, { at: now + delayMs, attempts: attempt });
    this.#log[decision.level]({ event: "uplink_retry", ...fields, delayMs, attempt }, "uplink: batch not delivered; retrying it after backoff while the others go on");
  }

  /**
   * A merged batch the cloud rejects goes back to the batches it was made of, each sent alone,
   * so that only the one the cloud refuses is dead-lettered, as without merging. The parts get
   * new ids, which are marked as sent so that they are not merged again. False when the batch
   * was not merged.
   */
  #unmerge(batch: StoredBatch, detail: string): boolean {
    const parts = this.#mergedParts.get(batch.id);
    this.#mergedParts.delete(batch.id);
    if (!parts || parts.length < 2) return false;
    const split = splitByItems(batch.messages, parts);
    if (split === null) return false;
    this.#retryAt.delete(batch.id);
    const ids = this.#o.store.replace(batch.id, split);
    if (ids.length > 0) this.#o.store.markAttempted?.(Math.max(...ids));
    this.#log.warn({ batch: batch.id, items: batch.items, into: ids, detail }, "uplink: the cloud rejected a merged batch; sending the batches it was made of one by one");
    return true;
  }

  /** The cloud refused this batch as too large: merge no batch that large again. */
  #learnLimit(batch: StoredBatch): void {
    const before = this.#mergeLimits;
    this.#mergeLimits = { maxItems: Math.min(before.maxItems, Math.max(1, Math.floor(batch.items / 2))), maxBytes: Math.min(before.maxBytes, Math.floor(batch.json.length / 2)) };
    if (this.#mergeLimits.maxItems < before.maxItems || this.#mergeLimits.maxBytes < before.maxBytes) {
      this.#log.info({ batch: batch.id, ...this.#mergeLimits }, "uplink: the cloud refused a batch as too large (413); merged requests stay below half its size from now on");
    }
  }

  /** Replaces a batch by its two halves; one that cannot be cut is dead-lettered as too large. */
  #split(batch: StoredBatch, reason: string): void {
    const parts = halve(batch.messages);
    if (parts === null) {
      this.#drop(batch, "too_large", `a single item is too large for the cloud (${reason})`);
      return;
    }
    this.#retryAt.delete(batch.id);
    this.#mergedParts.delete(batch.id);
    const ids = this.#o.store.replace(batch.id, parts);
    this.#stats.splits++;
    this.#log.info({ batch: batch.id, items: batch.items, into: ids, reason }, "uplink: split batch");
  }

  #drop(batch: StoredBatch, reason: Exclude<DropReason, "buffer_full">, detail: string): void {
    this.#retryAt.delete(batch.id);
    this.#mergedParts.delete(batch.id);
    this.#o.store.drop(batch.id, reason, detail);
    if (reason === "rejected") this.#stats.rejectedItems += batch.items;
    else this.#stats.tooLargeItems += batch.items;
    this.#log.error({ event: "uplink_dead_letter", batch: batch.id, items: batch.items, reason, detail }, "uplink: batch dead-lettered");
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
