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
  /** Resolves once the messages are durable; the caller may then treat them as handled. */
  write(messages: Message[]): void;
}

/** Counts items (values), not batches; events and statuses count as one item each. */
export function itemCount(messages: readonly Message[]): number {
  let n = 0;
  for (const m of messages) n += m.kind === "data" ? m.items.length : 1;
  return n;
}
