/**
 * tuf-js downloads through this fetcher, so every metadata and bundle request goes over the
 * connector's pinned mutual-TLS Transport (src/uplink/transport.ts), never Node's default
 * agent. tuf-js bounds each download by the length it expects (BaseFetcher.downloadFile), but
 * on overrun it only stops reading: the response is aborted here, or an endless answer would
 * keep its connection open.
 */
import path from "node:path";
import { Readable } from "node:stream";
import { BaseFetcher } from "tuf-js";
import { request, type Dispatcher } from "undici";
import type { Logger } from "../log.ts";
import { Progress } from "../progress.ts";
import { DownloadHTTPError } from "./tuf-errors.ts";

export class TransportFetcher extends BaseFetcher {
  readonly #dispatcher: Dispatcher;
  readonly #timeoutMs: number;
  readonly #vet: ((url: string, bytes: Buffer) => void) | undefined;
  readonly #bodies = new Map<string, Readable>();
  readonly #logger: Logger | undefined;
  /** The target file being downloaded, when it is large enough to show its progress. */
  #download: { url: string; progress: Progress } | null = null;
  #metadata = false;

  readonly #deadline: number;
  readonly #totalMs: number;

  /**
   * `vet` sees each metadata file before tuf-js does and may refuse it by throwing (checks tuf-js
   * lacks). All requests of this fetcher end within `totalMs` from its creation: a server that
   * drips bytes just fast enough for the idle timeout cannot hold the check for ever.
   */
  constructor(dispatcher: Dispatcher, timeoutMs = 30_000, vet?: (url: string, bytes: Buffer) => void, totalMs = 15 * 60_000, logger?: Logger) {
    super();
    this.#logger = logger;
    this.#dispatcher = dispatcher;
    this.#timeoutMs = timeoutMs;
    this.#vet = vet;
    this.#totalMs = totalMs;
    this.#deadline = performance.now() + totalMs;
  }

  /**
   * Whether the latest request failed in transport or with an HTTP error: tuf-js wraps such
   * errors for snapshot and targets into its own, and tuf-js stops at the first error, so this
   * tells "the repository could not be reached" from "it served something wrong".
   */
  get lastRequestFailed(): boolean {
    return this.#failed;
  }
  #failed = false;

  override async fetch(url: string): Promise<ReadableStream<Uint8Array<ArrayBuffer>>> {
    this.#failed = true;
    const left = Math.max(0, this.#deadline - performance.now());
    const res = await request(url, {
      method: "GET",
      dispatcher: this.#dispatcher,
      headersTimeout: this.#timeoutMs,
      bodyTimeout: this.#timeoutMs,
      signal: AbortSignal.timeout(Math.max(1, Math.ceil(left))),
    }).catch((err: unknown) => {
      throw left <= 0 || (err as Error).name === "TimeoutError" ? new Error(`GET ${url}: the update check took longer than ${this.#totalMs} ms`, { cause: err }) : err;
    });
    if (res.statusCode !== 200) {
      await res.body.dump().catch(() => undefined);
      // tuf-js reads 403/404 on the next root version as "no newer root": it must get its own error type.
      throw new DownloadHTTPError(`GET ${url}: HTTP ${res.statusCode}`, res.statusCode);
    }
    this.#failed = false;
    res.body.once("error", () => (this.#failed = true));
    this.#bodies.set(url, res.body);
    const download = this.#download?.url === url ? this.#download.progress : null;
    if (download) res.body.on("data", (chunk: Buffer) => download.add(chunk.length));
    return Readable.toWeb(res.body) as ReadableStream<Uint8Array<ArrayBuffer>>;
  }

  override async downloadFile<T>(url: string, maxLength: number, handler: (file: string) => Promise<T>): Promise<T> {
    // A target file (an update bundle), asked for with its exact length from the signed targets
    // metadata; tuf-js reads metadata through downloadBytes, which comes here too.
    const progress = this.#logger && !this.#metadata ? new Progress({ label: `update: downloading ${path.basename(new URL(url).pathname)}`, total: maxLength, unit: "bytes", logger: this.#logger }) : null;
    if (progress) this.#download = { url, progress };
    let outcome = "failed";
    try {
      const result = await super.downloadFile(url, maxLength, handler);
      outcome = "done";
      return result;
    } finally {
      progress?.end(outcome);
      this.#download = null;
      // A body read to its end is closed already; one abandoned at the length limit is aborted.
      this.#bodies.get(url)?.destroy();
      this.#bodies.delete(url);
    }
  }

  override async downloadBytes(url: string, maxLength: number): Promise<Buffer> {
    this.#metadata = true;
    const bytes = await super.downloadBytes(url, maxLength).finally(() => (this.#metadata = false));
    this.#vet?.(url, bytes);
    return bytes;
  }
}
