/**
 * tuf-js downloads through this fetcher, so every metadata and bundle request goes over the
 * connector's pinned mutual-TLS Transport (src/uplink/transport.ts), never Node's default
 * agent. tuf-js itself bounds each download by the length it expects (BaseFetcher.downloadFile).
 */
import { Readable } from "node:stream";
import { BaseFetcher } from "tuf-js";
import { request, type Dispatcher } from "undici";
import { DownloadHTTPError } from "./tuf-errors.ts";

export class TransportFetcher extends BaseFetcher {
  readonly #dispatcher: Dispatcher;
  readonly #timeoutMs: number;

  constructor(dispatcher: Dispatcher, timeoutMs = 30_000) {
    super();
    this.#dispatcher = dispatcher;
    this.#timeoutMs = timeoutMs;
  }

  override async fetch(url: string): Promise<ReadableStream<Uint8Array<ArrayBuffer>>> {
    const res = await request(url, { method: "GET", dispatcher: this.#dispatcher, headersTimeout: this.#timeoutMs, bodyTimeout: this.#timeoutMs });
    if (res.statusCode !== 200) {
      await res.body.dump().catch(() => undefined);
      // tuf-js reads 403/404 on the next root version as "no newer root": it must get its own error type.
      throw new DownloadHTTPError(`GET ${url}: HTTP ${res.statusCode}`, res.statusCode);
    }
    return Readable.toWeb(res.body) as ReadableStream<Uint8Array<ArrayBuffer>>;
  }
}
