import type { Item, Message } from "../message.ts";
import { decodeJson, encodeJson, type Encoded } from "./codec.ts";

type Row = [key: string, t: string, q: number, v: unknown];

/**
 * The last data item the buffer took for each (machine, key): what the connector has delivered,
 * whether the cloud has acknowledged it yet or not. After a restart a new monitored item's first
 * notification repeats the server's current value; the session drops it when it equals this item.
 *
 * Only items that were appended count: an item suppressed as a repeat must be one that is in the
 * buffer or at the cloud, or it would be lost. Heartbeats are left out: they repeat a value under
 * the connector's clock, and the server's next notification carries the original time.
 */
export class LastDelivered {
  readonly #machines = new Map<string, Map<string, Item>>();
  /** Something was noted since the last `encode`. */
  dirty = false;

  /** The appended messages, newest last (the hot path: one map update per item). */
  note(messages: readonly Message[]): void {
    for (const m of messages) {
      if (m.kind !== "data") continue;
      const items = this.#machine(m.machine);
      for (const item of m.items) if (item.hb !== true) items.set(item.key, item);
      this.dirty = true;
    }
  }

  /**
   * Messages read back at open from batches the snapshot does not cover. Split batches hold
   * older items under newer ids, so the newer source time wins, not the newer batch.
   */
  merge(messages: readonly Message[]): void {
    for (const m of messages) {
      if (m.kind !== "data") continue;
      const items = this.#machine(m.machine);
      for (const item of m.items) {
        if (item.hb === true) continue;
        const known = items.get(item.key);
        if (!known || item.t >= known.t) items.set(item.key, item);
      }
    }
  }

  /**
   * A copy of one machine's items for its session to own, limited to `keys` (the mapping's):
   * keys no longer mapped are forgotten here too.
   */
  take(machine: string, keys: ReadonlySet<string>): Map<string, Item> {
    const items = this.#machines.get(machine);
    const out = new Map<string, Item>();
    if (!items) return out;
    for (const [key, item] of items) {
      if (keys.has(key)) out.set(key, item);
      else items.delete(key);
    }
    return out;
  }

  get size(): number {
    let n = 0;
    for (const items of this.#machines.values()) n += items.size;
    return n;
  }

  /** The whole table, compressed: one row, rewritten at each snapshot. */
  encode(): Encoded {
    const machines: Record<string, Row[]> = {};
    for (const [machine, items] of this.#machines) {
      const rows: Row[] = [];
      for (const item of items.values()) rows.push([item.key, item.t, item.q, item.v]);
      machines[machine] = rows;
    }
    this.dirty = false;
    return encodeJson({ machines }, true);
  }

  /** Reads what `encode` wrote; throws on damage (zstd checks its content). */
  static decode(format: number, payload: Uint8Array): LastDelivered {
    const snapshot = decodeJson(format, payload) as { machines: Record<string, Row[]> };
    const out = new LastDelivered();
    for (const [machine, rows] of Object.entries(snapshot.machines)) {
      const items = out.#machine(machine);
      for (const [key, t, q, v] of rows) items.set(key, { key, v, q, t });
    }
    return out;
  }

  #machine(machine: string): Map<string, Item> {
    let items = this.#machines.get(machine);
    if (!items) this.#machines.set(machine, (items = new Map()));
    return items;
  }
}
