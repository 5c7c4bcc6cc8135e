/**
 * The small typed interfaces through which modules talk. The wire form of these
 * messages is documented in docs/protocol.md.
 */

/** One value of one mapped node, as it goes to the cloud. */
export interface Item {
  /** The mapping's data point key. */
  key: string;
  /** The value, JSON-safe (Int64 as string, ByteString as base64, DateTime as ISO string). */
  v: unknown;
  /** Numeric OPC UA StatusCode; 0 = Good. */
  q: number;
  /** Source timestamp, ISO 8601 UTC; for a heartbeat, the time of the heartbeat. */
  t: string;
  /** Engineering unit from the mapping, when it gives one. */
  u?: string;
  /** Present on heartbeats only: the value has not changed since it was last sent. */
  hb?: true;
}

export interface DataMessage {
  kind: "data";
  machine: string;
  items: Item[];
}

export interface EventMessage {
  kind: "event";
  machine: string;
  /** Event type key from the mapping, e.g. "alarm". */
  key: string;
  t: string;
  fields: Record<string, unknown>;
}

export interface StatusMessage {
  kind: "status";
  machine: string;
  state: "online" | "offline";
  reason?: string;
  t: string;
}

export type Message = DataMessage | EventMessage | StatusMessage;

/** Where the OPC UA layer hands its output; it knows nothing of HTTP. */
export interface MessageSink {
  /**
   * Takes the messages for the durable buffer and returns at once: they are committed within
   * one group commit (src/buffer/writer.ts), or counted as dropped with a reason.
   */
  write(messages: Message[]): void;
}

/**
 * Why a stored batch left the buffer without being acknowledged. `tampered`: an encrypted
 * buffer's batch failed authentication (altered, or moved to another id), so it is not sent.
 */
export type DropReason = "buffer_full" | "rejected" | "too_large" | "tampered";

/** A batch as the buffer keeps it and the uplink sends it. */
export interface StoredBatch {
  id: number;
  /** The messages as stored: a JSON array, UTF-8, sent as it is. */
  json: Buffer;
  /** The same, parsed on first use (the sender only needs `json`). */
  readonly messages: Message[];
  items: number;
  /** Stored payload bytes (after compression); what counts against `maxBytes`. */
  bytes: number;
  /** When the batch was appended, epoch ms. Split parts keep their original's time. */
  createdAt: number;
  /** Only on a batch that nextMerged has just merged: the item counts of the batches it was made of, oldest first. */
  parts?: number[];
}

/** What the uplink needs from the durable buffer (src/buffer/buffer.ts implements it). */
export interface BatchStore {
  readonly epoch: string;
  next(limit: number, exclude?: ReadonlySet<number>): StoredBatch[];
  /** Like next, with consecutive never-sent batches merged within the limits. */
  nextMerged?(limit: number, exclude: ReadonlySet<number>, limits: { maxItems: number; maxBytes: number }): StoredBatch[];
  /** The batch goes into a request: the cloud may know its key from now on, so it is never merged. */
  markAttempted?(id: number): void;
  ack(id: number): void;
  replace(id: number, parts: Message[][]): number[];
  drop(id: number, reason: DropReason, detail: string): void;
}

/** Counts items (values), not batches; events and statuses count as one item each. */
export function itemCount(messages: readonly Message[]): number {
  let n = 0;
  for (const m of messages) n += m.kind === "data" ? m.items.length : 1;
  return n;
}
