import { constants, zstdCompressSync, zstdDecompressSync } from "node:zlib";
import type { Message } from "../message.ts";
import { KerfError } from "../errors.ts";

/**
 * How a batch's payload is stored. The format travels with every row, so a buffer
 * written with one `compress` setting is still readable after the setting changes.
 */
export const Format = {
  /** UTF-8 JSON array of messages. */
  json: 0,
  /** The same JSON, zstd-compressed (level 3, with a content checksum). */
  zstd: 1,
} as const;
export type Format = (typeof Format)[keyof typeof Format];

export interface Encoded {
  format: Format;
  payload: Uint8Array;
}

const zstdOptions = {
  params: {
    [constants.ZSTD_c_compressionLevel]: 3,
    // A checksum lets a flipped bit in a stored payload fail loudly on read,
    // which SQLite's own page format would not notice.
    [constants.ZSTD_c_checksumFlag]: 1,
  },
};

/** A batch's messages, or any JSON value stored like them (the snapshot of what was delivered). */
export function encodeJson(value: unknown, compress: boolean): Encoded {
  return encodeBytes(Buffer.from(JSON.stringify(value), "utf8"), compress);
}

/** JSON that is text already (a merged batch's messages, UTF-8). */
export function encodeBytes(json: Buffer, compress: boolean): Encoded {
  if (compress) {
    const packed = zstdCompressSync(json, zstdOptions);
    // Tiny batches can grow; keep whichever is smaller.
    if (packed.length < json.length) return { format: Format.zstd, payload: packed };
  }
  return { format: Format.json, payload: json };
}

/** What `encodeJson` stored; throws on an unknown format or damaged zstd data. */
export function decodeJson(format: number, payload: Uint8Array): unknown {
  return JSON.parse(decompress(format, payload).toString("utf8"));
}

function decompress(format: number, payload: Uint8Array): Buffer {
  if (format === Format.json) return Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  if (format === Format.zstd) return zstdDecompressSync(payload);
  throw new KerfError("BUFFER_CORRUPT", `unknown payload format ${format} (expected 0 = json or 1 = zstd)`);
}

/** The stored JSON array's UTF-8 bytes, checked only for its brackets: the sender forwards them as they are. */
export function decodeBytes(format: number, payload: Uint8Array): Buffer {
  const json = decompress(format, payload);
  // JSON.stringify of an array: no whitespace around it
  if (json[0] !== 0x5b || json[json.length - 1] !== 0x5d) throw new KerfError("BUFFER_CORRUPT", "payload is not a JSON array of messages");
  return json;
}

export function parseMessages(json: Buffer): Message[] {
  const value: unknown = JSON.parse(json.toString("utf8"));
  if (!Array.isArray(value)) throw new KerfError("BUFFER_CORRUPT", "payload is not a JSON array of messages");
  return value as Message[];
}
