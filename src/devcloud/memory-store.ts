/**
 * A devcloud store in memory, for the benchmark: it measures the connector, and SQLite's index
 * upkeep at 50k items/s would otherwise take the core the connector is being measured on.
 * Same contract as CloudStore, minus durability across a restart.
 */
import { itemCount, type Message } from "../message.ts";
import { notify, type BatchListener, type BatchRecord, type CloudCounts, type StoredItem } from "./store.ts";

export interface MemoryStoreOptions {
  /**
   * Which data points keep their full history (and are checked item by item for duplicates);
   * the others only count. At 100k items/s a history of everything costs the benchmark more
   * memory and CPU than the connector it measures. Default: all.
   */
  keep?: (key: string) => boolean;
}

export class MemoryStore {
  readonly #keep: (key: string) => boolean;
  readonly #batches = new Set<string>();
  readonly #items = new Map<string, (StoredItem & { ms: number })[]>();
  readonly #seen = new Set<string>();
  readonly #latest = new Map<string, Map<string, StoredItem & { ms: number }>>();
  readonly #sentBy = new Set<string>();
  readonly #events = new Map<string, Message[]>();
  readonly #listeners = new Set<BatchListener>();
  readonly #counts: CloudCounts = { requests: 0, batches: 0, duplicateBatches: 0, items: 0, duplicateItems: 0 };

  constructor(options: MemoryStoreOptions = {}) {
    this.#keep = options.keep ?? (() => true);
  }

  countRequest(): void {
    this.#counts.requests++;
  }

  ingest(connector: string, batch: number, idempotencyKey: string, messages: Message[]): BatchRecord {
    const items = itemCount(messages);
    const duplicate = this.#batches.has(idempotencyKey);
    if (duplicate) this.#counts.duplicateBatches++;
    else {
      this.#batches.add(idempotencyKey);
      for (const m of messages) {
        if (m.kind !== "data") {
          this.#events.set(m.machine, [...(this.#events.get(m.machine) ?? []), m]);
          continue;
        }
        this.#sentBy.add(`${connector}\u0000${m.machine}`);
        let latest = this.#latest.get(m.machine);
        if (!latest) this.#latest.set(m.machine, (latest = new Map()));
        // items of one batch mostly share their timestamp: parse each one once
        let lastT = "";
        let lastMs = NaN;
        for (const item of m.items) {
          if (item.t !== lastT) {
            lastT = item.t;
            lastMs = Date.parse(item.t);
          }
          const stored = { v: item.v ?? null, q: item.q, t: item.t, ms: lastMs };
          const prev = latest.get(item.key);
          if (!prev || stored.ms >= prev.ms) latest.set(item.key, stored);
          if (!this.#keep(item.key)) continue;
          const id = `${m.machine}\u0000${item.key}`;
          const fingerprint = `${id}\u0000${item.t}\u0000${JSON.stringify(stored.v)}`;
          if (this.#seen.has(fingerprint)) this.#counts.duplicateItems++;
          this.#seen.add(fingerprint);
          const list = this.#items.get(id);
          if (list) list.push(stored);
          else this.#items.set(id, [stored]);
        }
      }
      this.#counts.batches++;
      this.#counts.items += items;
    }
    return notify(this.#listeners, { connector, batch, idempotencyKey, messages, items, duplicate });
  }

  has(idempotencyKey: string): boolean {
    return this.#batches.has(idempotencyKey);
  }

  items(machine: string, key: string): StoredItem[] {
    return [...(this.#items.get(`${machine}\u0000${key}`) ?? [])].sort((a, b) => a.ms - b.ms).map(({ v, q, t }) => ({ v, q, t }));
  }

  sentBy(connector: string, machine: string): boolean {
    return this.#sentBy.has(`${connector}\u0000${machine}`);
  }

  latest(machine: string): Record<string, StoredItem> {
    const out = Object.create(null) as Record<string, StoredItem>;
    for (const [key, { v, q, t }] of this.#latest.get(machine) ?? []) out[key] = { v, q, t };
    return out;
  }

  /** How many data points of `machine` have arrived at least once. */
  keyCount(machine: string): number {
    return this.#latest.get(machine)?.size ?? 0;
  }

  events(machine: string): Message[] {
    return [...(this.#events.get(machine) ?? [])];
  }

  counts(): CloudCounts {
    return { ...this.#counts };
  }

  onBatch(listener: BatchListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  close(): void {
    this.#items.clear();
    this.#seen.clear();
  }
}
