/**
 * The command channel: the connector pulls command envelopes from the cloud by long poll over
 * its own uplink (the pinned mutual-TLS transport and its bearer token), so nothing listens for
 * the cloud. See STATUS-cmd.md for the protocol:
 *   GET  <cloud>/v1/commands?wait=N     → 200 {"commands":[{jti, envelope}]} | 204
 *   POST <cloud>/v1/commands/<jti>/result  CommandResult → 2xx
 *
 * One poll is in flight at a time; commands are handed to `handle` one at a time, in order.
 * After 200 or 204 the next poll starts at once; after an error it waits with full jitter, so a
 * fleet does not return in lockstep after a cloud restart. The transport is asked for a
 * connection on every poll, so a rotated certificate or a renewed token is used from the next one.
 */
import { request, type Dispatcher } from "undici";
import { z } from "zod";
import { backoff } from "../backoff.ts";
import type { Logger } from "../log.ts";
import type { TokenSource } from "../uplink/sender.ts";
import { toUplinkError } from "../uplink/errors.ts";
import type { Secret } from "../config/secrets.ts";
import type { CommandResult } from "./gate.ts";

export interface CommandItem {
  jti: string;
  envelope: string;
}

export interface CommandChannelOptions {
  /** cloud.url */
  url: string;
  transport: Dispatcher;
  tokens?: TokenSource | undefined;
  /** How long the cloud may hold a poll open. Default 25 s: under the idle cut of common proxies. */
  waitSeconds?: number;
  retry?: { initialDelayMs: number; maxDelayMs: number };
  /** Runs one command (gate, execution, result); an error is logged and the channel goes on. */
  handle(item: CommandItem): Promise<void>;
  /** After each answered poll (and its commands): what waits for the cloud (results, audit rows) goes now. */
  afterPoll?: () => Promise<void>;
  logger: Logger;
  random?: () => number;
}

export interface ChannelHealth {
  /** When a poll last got an answer (200 or 204). */
  lastPollAt: number | null;
  lastError: string | null;
  lastErrorCode: string | null;
  consecutiveFailures: number;
  received: number;
}

/** A poll answer holds at most this many envelopes, and this many bytes (mapping.set carries a whole mapping). */
const MAX_COMMANDS = 16;
const MAX_POLL_BYTES = 64 * 1024 * 1024;
const MAX_RESULT_ANSWER_BYTES = 64 * 1024;

const commandItem = z.object({ jti: z.string().min(1).max(128), envelope: z.string().min(1) });
const pollAnswer = z.object({ commands: z.array(z.unknown()).max(MAX_COMMANDS) });

/**
 * One item of a poll answer. A malformed one is still handed on, so that the gate refuses and
 * audits it like any bad envelope; its jti is kept only when it is a usable id ("" otherwise:
 * no result can be posted under it).
 */
function toItem(raw: unknown): CommandItem {
  const ok = commandItem.safeParse(raw);
  if (ok.success) return ok.data;
  const r = (raw ?? {}) as { jti?: unknown; envelope?: unknown };
  return { jti: typeof r.jti === "string" && r.jti.length <= 128 ? r.jti : "", envelope: typeof r.envelope === "string" ? r.envelope : "" };
}

export class CommandChannel {
  readonly #o: CommandChannelOptions;
  readonly #base: string;
  readonly #host: string;
  readonly #wait: number;
  readonly #abort = new AbortController();
  #loop: Promise<void> | null = null;
  #health: ChannelHealth = { lastPollAt: null, lastError: null, lastErrorCode: null, consecutiveFailures: 0, received: 0 };

  constructor(options: CommandChannelOptions) {
    this.#o = options;
    this.#base = options.url.replace(/\/+$/, "");
    this.#host = new URL(this.#base).host;
    this.#wait = options.waitSeconds ?? 25;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  /** Ends the poll in flight; a command being handled finishes first. */
  async stop(): Promise<void> {
    this.#abort.abort();
    await this.#loop;
  }

  health(): ChannelHealth {
    return { ...this.#health };
  }

  /** Posts a command's result; throws when the cloud does not take it (the caller keeps it and retries). */
  async postResult(jti: string, result: CommandResult | { state: "running" }): Promise<void> {
    const res = await this.#send(`${this.#base}/v1/commands/${encodeURIComponent(jti)}/result`, "POST", JSON.stringify(result), 30_000);
    await readBounded(res.body, MAX_RESULT_ANSWER_BYTES);
    if (res.statusCode < 200 || res.statusCode > 299) throw new Error(`the cloud answered ${res.statusCode} to the result of ${jti}`);
  }

  /** Sends audit rows (POST /v1/audit); throws unless the cloud took them (2xx). */
  async postAudit(rows: readonly unknown[]): Promise<void> {
    const res = await this.#send(`${this.#base}/v1/audit`, "POST", JSON.stringify({ rows }), 30_000);
    const text = await readBounded(res.body, MAX_RESULT_ANSWER_BYTES);
    if (res.statusCode < 200 || res.statusCode > 299) throw Object.assign(new Error(`the cloud answered ${res.statusCode} to the audit rows: ${text.slice(0, 300)}`), { code: `HTTP_${res.statusCode}` });
  }

  async #run(): Promise<void> {
    const signal = this.#abort.signal;
    while (!signal.aborted) {
      let items: CommandItem[];
      try {
        items = await this.#poll();
        this.#health = { ...this.#health, lastPollAt: Date.now(), consecutiveFailures: 0 };
      } catch (err) {
        if (signal.aborted) break;
        const failures = this.#health.consecutiveFailures + 1;
        const e = err as { code?: string; message?: string };
        this.#health = { ...this.#health, consecutiveFailures: failures, lastError: e.message ?? String(err), lastErrorCode: e.code ?? null };
        const delay = backoff(failures, this.#o.retry ?? { initialDelayMs: 1000, maxDelayMs: 30_000 }, this.#o.random);
        this.#o.logger.warn({ code: e.code, failures, retryInMs: delay }, `command poll failed: ${e.message ?? String(err)}`);
        await sleep(delay, signal);
        continue;
      }
      for (const item of items) {
        this.#health.received++;
        try {
          await this.#o.handle(item);
        } catch (err) {
          this.#o.logger.error({ jti: item.jti, err }, "command handling failed");
        }
      }
      await this.#o.afterPoll?.().catch((err: unknown) => this.#o.logger.warn({ err: (err as Error).message }, "sending what waits for the cloud failed"));
    }
  }

  async #poll(): Promise<CommandItem[]> {
    const res = await this.#send(`${this.#base}/v1/commands?wait=${this.#wait}`, "GET", undefined, (this.#wait + 15) * 1000);
    if (res.statusCode === 204) {
      await readBounded(res.body, MAX_RESULT_ANSWER_BYTES);
      return [];
    }
    if (res.statusCode !== 200) {
      await readBounded(res.body, MAX_RESULT_ANSWER_BYTES);
      throw Object.assign(new Error(`the cloud answered ${res.statusCode} to the command poll`), { code: `HTTP_${res.statusCode}` });
    }
    const text = await readBounded(res.body, MAX_POLL_BYTES);
    let parsed: z.infer<typeof pollAnswer>;
    try {
      parsed = pollAnswer.parse(JSON.parse(text));
    } catch {
      throw Object.assign(new Error(`the command poll's answer is not {"commands":[{jti, envelope}]} with at most ${MAX_COMMANDS} commands`), { code: "COMMAND_POLL_MALFORMED" });
    }
    return parsed.commands.map(toItem);
  }

  /** One request with the current token; a 401 gets one new token and one retry, as for ingest. */
  async #send(url: string, method: "GET" | "POST", body: string | undefined, timeoutMs: number): Promise<Dispatcher.ResponseData> {
    const tokens = this.#o.tokens;
    const signal = AbortSignal.any([this.#abort.signal, AbortSignal.timeout(timeoutMs)]);
    const once = (token: Secret | undefined) =>
      request(url, {
        dispatcher: this.#o.transport,
        method,
        headers: { ...(body === undefined ? {} : { "content-type": "application/json" }), ...(token ? { authorization: `Bearer ${token.reveal()}` } : {}) },
        ...(body === undefined ? {} : { body }),
        signal,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
    try {
      let token = tokens ? await tokens.token() : undefined;
      let res = await once(token);
      if (res.statusCode === 401 && tokens && token) {
        await readBounded(res.body, MAX_RESULT_ANSWER_BYTES);
        token = await tokens.renew(token);
        res = await once(token);
      }
      return res;
    } catch (err) {
      if (this.#abort.signal.aborted) throw err;
      throw toUplinkError(err, this.#host);
    }
  }
}

/** The body as text; more than `max` bytes is an error, not a truncation (an envelope cut short is no envelope). */
async function readBounded(body: Dispatcher.ResponseData["body"], max: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += (chunk as Buffer).length;
    if (size > max) {
      body.destroy();
      throw Object.assign(new Error(`the answer is larger than ${max} bytes`), { code: "COMMAND_POLL_TOO_LARGE" });
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
