/**
 * The devcloud's storage: SQLite in its directory, so accepted data and idempotency keys
 * survive a restart (the outage tests stop and restart it on the same directory).
 */
import { DatabaseSync } from "node:sqlite";
import { itemCount, type Message } from "../message.ts";

export interface StoredItem {
  v: unknown;
  q: number;
  t: string;
}

export interface StoredEvent {
  kind: "event" | "status";
  machine: string;
  t: string;
  message: Message;
}

export interface CloudCounts {
  /** Ingest requests received, whatever their answer. */
  requests: number;
  /** Batches accepted and stored (first delivery of an idempotency key). */
  batches: number;
  /** Batches received again under a known idempotency key (acknowledged, not stored). */
  duplicateBatches: number;
  /** Items stored: data items, events and statuses (one each). */
  items: number;
  /** Data items whose (machine, key, t, v) was already stored: 0 in a correct run. */
  duplicateItems: number;
}

export interface BatchRecord {
  connector: string;
  batch: number;
  idempotencyKey: string;
  messages: Message[];
  items: number;
  duplicate: boolean;
}

export type BatchListener = (batch: BatchRecord) => void;

/** Tells every listener about a batch; a listener's failure never breaks ingestion. */
export function notify(listeners: Iterable<BatchListener>, record: BatchRecord): BatchRecord {
  for (const listener of listeners) {
    try {
      listener(record);
    } catch {
      // a test's or the benchmark's listener is not the ingest path's concern
    }
  }
  return record;
}

const schema = `
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS batches (
  idem_key TEXT PRIMARY KEY, connector TEXT NOT NULL, batch INTEGER NOT NULL,
  items INTEGER NOT NULL, received_at INTEGER NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS items (
  seq INTEGER PRIMARY KEY, machine TEXT NOT NULL, key TEXT NOT NULL, t TEXT NOT NULL,
  t_ms INTEGER NOT NULL, v TEXT NOT NULL, q INTEGER NOT NULL, connector TEXT NOT NULL) STRICT;
CREATE INDEX IF NOT EXISTS items_by_key ON items (machine, key, t_ms);
CREATE TABLE IF NOT EXISTS latest (
  machine TEXT NOT NULL, key TEXT NOT NULL, t TEXT NOT NULL, t_ms INTEGER NOT NULL,
  v TEXT NOT NULL, q INTEGER NOT NULL, PRIMARY KEY (machine, key)) STRICT;
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY, machine TEXT NOT NULL, kind TEXT NOT NULL, t TEXT NOT NULL,
  body TEXT NOT NULL, connector TEXT NOT NULL) STRICT;
`;

const counterNames = ["requests", "batches", "duplicateBatches", "items", "duplicateItems"] as const;
type CounterName = (typeof counterNames)[number];

export class CloudStore {
  readonly #db: DatabaseSync;
  readonly #listeners = new Set<BatchListener>();
  readonly #s: ReturnType<typeof prepareStatements>;

  constructor(file: string) {
    this.#db = new DatabaseSync(file);
    // A development server: WAL with NORMAL sync survives a process kill, which is what the tests do.
    this.#db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;");
    this.#db.exec(schema);
    const insertCounter = this.#db.prepare("INSERT OR IGNORE INTO counters (name, value) VALUES (?, 0)");
    for (const name of counterNames) insertCounter.run(name);
    this.#s = prepareStatements(this.#db);
  }

  countRequest(): void {
    this.#bump("requests", 1);
  }

  /**
   * Stores a batch once per idempotency key, in one transaction: a crash leaves it either
   * fully stored with its key, or not at all (and the connector's retry stores it then).
   */
  ingest(connector: string, batch: number, idempotencyKey: string, messages: Message[]): BatchRecord {
    const items = itemCount(messages);
    let duplicate = false;
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      if (this.#s.findBatch.get(idempotencyKey)) {
        duplicate = true;
        this.#bump("duplicateBatches", 1);
      } else {
        this.#s.insertBatch.run(idempotencyKey, connector, batch, items, Date.now());
        let duplicateItems = 0;
        // The newest item of each key in this batch; one upsert per key rather than per item.
        const newest = new Map<string, { machine: string; key: string; t: string; tMs: number; v: string; q: number }>();
        for (const m of messages) {
          if (m.kind === "data") {
            for (const item of m.items) {
              const v = JSON.stringify(item.v ?? null);
              const tMs = Date.parse(item.t);
              if (this.#s.seen.get(m.machine, item.key, tMs, item.t, v)) duplicateItems++;
              this.#s.insertItem.run(m.machine, item.key, item.t, tMs, v, item.q, connector);
              const id = `${m.machine}\u0000${item.key}`;
              const prev = newest.get(id);
              if (!prev || tMs >= prev.tMs) newest.set(id, { machine: m.machine, key: item.key, t: item.t, tMs, v, q: item.q });
            }
          } else {
            this.#s.insertEvent.run(m.machine, m.kind, m.t, JSON.stringify(m), connector);
          }
        }
        for (const n of newest.values()) this.#s.upsertLatest.run(n.machine, n.key, n.t, n.tMs, n.v, n.q);
        this.#bump("batches", 1);
        this.#bump("items", items);
        if (duplicateItems > 0) this.#bump("duplicateItems", duplicateItems);
      }
      this.#db.exec("COMMIT");
    } catch (err) {
      this.#db.exec("ROLLBACK");
      throw err;
    }
    return notify(this.#listeners, { connector, batch, idempotencyKey, messages, items, duplicate });
  }

  /** Whether a batch with this idempotency key is stored. */
  has(idempotencyKey: string): boolean {
    return this.#s.findBatch.get(idempotencyKey) !== undefined;
  }

  /** All stored items of one key, in source-timestamp order. */
  items(machine: string, key: string): StoredItem[] {
    return this.#s.items.all(machine, key).map((r) => ({ v: JSON.parse(r.v as string), q: r.q as number, t: r.t as string }));
  }

  /** The newest value (by source timestamp) of each key of a machine. */
  latest(machine: string): Record<string, StoredItem> {
    const out: Record<string, StoredItem> = Object.create(null);
    for (const r of this.#s.latest.all(machine)) out[r.key as string] = { v: JSON.parse(r.v as string), q: r.q as number, t: r.t as string };
    return out;
  }

  /** Whether `connector` has sent data of `machine` (the partner API shows a machine only to apps granted on its connector). */
  sentBy(connector: string, machine: string): boolean {
    return this.#db.prepare("SELECT 1 FROM items WHERE machine = ? AND connector = ? LIMIT 1").get(machine, connector) !== undefined;
  }

  /** Events and status messages of a machine, in arrival order. */
  events(machine: string): Message[] {
    return this.#s.events.all(machine).map((r) => JSON.parse(r.body as string) as Message);
  }

  counts(): CloudCounts {
    const out = { requests: 0, batches: 0, duplicateBatches: 0, items: 0, duplicateItems: 0 };
    for (const r of this.#s.counters.all()) {
      if ((counterNames as readonly string[]).includes(r.name as string)) out[r.name as CounterName] = Number(r.value);
    }
    return out;
  }

  /** Calls `listener` after each ingested batch (duplicates included); returns the unsubscribe function. */
  onBatch(listener: BatchListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  close(): void {
    if (this.#db.isOpen) this.#db.close();
  }

  #bump(name: CounterName, by: number): void {
    this.#s.bump.run(by, name);
  }
}

function prepareStatements(db: DatabaseSync) {
  return {
    bump: db.prepare("UPDATE counters SET value = value + ? WHERE name = ?"),
    counters: db.prepare("SELECT name, value FROM counters"),
    findBatch: db.prepare("SELECT items FROM batches WHERE idem_key = ?"),
    insertBatch: db.prepare("INSERT INTO batches (idem_key, connector, batch, items, received_at) VALUES (?, ?, ?, ?, ?)"),
    seen: db.prepare("SELECT 1 AS hit FROM items WHERE machine = ? AND key = ? AND t_ms = ? AND t = ? AND v = ? LIMIT 1"),
    insertItem: db.prepare("INSERT INTO items (machine, key, t, t_ms, v, q, connector) VALUES (?, ?, ?, ?, ?, ?, ?)"),
    upsertLatest: db.prepare(
      `INSERT INTO latest (machine, key, t, t_ms, v, q) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (machine, key) DO UPDATE SET t = excluded.t, t_ms = excluded.t_ms, v = excluded.v, q = excluded.q
       WHERE excluded.t_ms >= latest.t_ms`,
    ),
    insertEvent: db.prepare("INSERT INTO events (machine, kind, t, body, connector) VALUES (?, ?, ?, ?, ?)"),
    items: db.prepare("SELECT v, q, t FROM items WHERE machine = ? AND key = ? ORDER BY t_ms, t, seq"),
    latest: db.prepare("SELECT key, v, q, t FROM latest WHERE machine = ? ORDER BY key"),
    events: db.prepare("SELECT body FROM events WHERE machine = ? ORDER BY seq"),
  };
}
