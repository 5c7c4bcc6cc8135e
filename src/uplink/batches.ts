/**
 * How messages become requests: cut into batches for the buffer (chunkMessages), cut again when
 * the cloud refuses a batch as too large (halve) or a merged batch must be taken apart
 * (splitByItems), and wrapped in the wire envelope (docs/protocol.md).
 */
import { itemCount, type Message, type StoredBatch } from "../message.ts";

const CLOSE_BRACE = Buffer.from("}");

/**
 * The request body for a stored batch: `{"connector", "batch", "messages"}`. The stored JSON
 * goes out as it is: parsing and re-serialising 100k items/s would cost more than the rest of
 * the uplink.
 */
export function envelope(connector: string, batch: Pick<StoredBatch, "id" | "json">): Buffer {
  const head = Buffer.from(`{"connector":${JSON.stringify(connector)},"batch":${batch.id},"messages":`);
  return Buffer.concat([head, batch.json, CLOSE_BRACE]);
}

/** Messages cut into batches of at most `maxItems` items; a data message larger than that is cut by its items. */
export function chunkMessages(messages: readonly Message[], maxItems: number): Message[][] {
  const out: Message[][] = [];
  let current: Message[] = [];
  let count = 0;
  const push = (m: Message, n: number) => {
    if (count + n > maxItems && current.length > 0) {
      out.push(current);
      current = [];
      count = 0;
    }
    current.push(m);
    count += n;
  };
  for (const m of messages) {
    if (m.kind !== "data") push(m, 1);
    else if (m.items.length <= maxItems) push(m, m.items.length);
    else
      for (let i = 0; i < m.items.length; i += maxItems) {
        const items = m.items.slice(i, i + maxItems);
        push({ ...m, items }, items.length);
      }
  }
  if (current.length > 0) out.push(current);
  return out;
}

/** Messages cut where the running item count reaches each of `counts`; null if they do not line up. */
export function splitByItems(messages: readonly Message[], counts: readonly number[]): Message[][] | null {
  const out: Message[][] = [];
  let i = 0;
  for (const count of counts) {
    const part: Message[] = [];
    let n = 0;
    while (n < count && i < messages.length) {
      const m = messages[i++]!;
      part.push(m);
      n += itemCount([m]);
    }
    if (n !== count) return null;
    out.push(part);
  }
  return i === messages.length ? out : null;
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
