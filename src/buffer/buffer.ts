/**
 * # The durable buffer
 *
 * Everything the connector has read from OPC UA and not yet seen acknowledged by the
 * cloud lives here. From the moment `append` returns, the connector owns the data.
 *
 * ## Layout
 * One SQLite file (`node:sqlite`) in WAL mode, plus its `-wal` file:
 * - `batches(id INTEGER PRIMARY KEY AUTOINCREMENT, created_at, items, bytes, format, payload BLOB)`:
 *   one row per appended batch. `payload` is the JSON array of messages, zstd-compressed when
 *   `format` = 1 (see codec.ts); `bytes` is the payload's stored length. An index on
 *   `created_at` answers "how old is the oldest data" without a scan.
 * - `counters(name, value)`: lifetime item counts (appended, acked, dropped by reason).
 * - `meta(name, value)`: the `epoch`, a random UUID made once with the file. It goes into
 *   the idempotency key, so a wiped state dir never produces keys the cloud has seen. An
 *   encrypted file also has `cipher` and `key_check` (see "Encryption").
 * - `delivered(upto, format, payload)`: one row, the snapshot of what was delivered (below).
 * - `PRAGMA application_id` marks the file as ours, `user_version` is the schema version.
 *
 * ## Ids
 * The batch id is the wire `batch` number. AUTOINCREMENT keeps ids strictly increasing
 * and never reused: not after every row is deleted, not across restarts (`#insert` picks the
 * next id itself, so that a sealed payload can be bound to it; the insert moves the sequence).
 * A batch refused as too large is split by `replace` into new batches with new (higher) ids.
 *
 * ## What was delivered survives a restart
 * After a restart (also after SIGKILL) the sessions subscribe anew, and the first notification of
 * each new monitored item repeats the server's current value. A value that has not changed since
 * it was delivered must not reach the cloud twice, so the buffer knows the last data item it took
 * per (machine, key) (delivered.ts), across restarts, without a write per item:
 * - the items are noted in memory on `append` (one map update per item);
 * - every 5 s (sooner when 4 MiB of acknowledged batches wait), one transaction writes the whole
 *   table as one compressed row with `upto`, the highest batch id it covers;
 * - so `ack` does not delete a batch but marks it (`acked` = 1): it leaves the queue and the
 *   counts at once, and the snapshot that covers it deletes it;
 * - at open, the table is the snapshot plus the items of the batches above `upto`, acknowledged
 *   or not.
 *
 * ## Merging a backlog
 * `nextMerged` hands the sender consecutive batches that were never in a request merged into
 * one, up to the request limits: a backlog leaves in few large requests, not one per publish
 * response. `markAttempted` records (in `meta`, as `attempted_through`) that a batch went into
 * a request: the cloud may know its idempotency key from then on, so it is never merged. A merged
 * batch takes the row and id of the newest batch it is made of (which the cloud has not seen,
 * and which lies above any snapshot's `upto` that a part lies above).
 *
 * ## Durability
 * - `append`, `appendMany` (and `replace`) commit with `synchronous = FULL`: when they return,
 *   the batches are fsynced in the WAL. A SIGKILL or power loss after that loses nothing.
 *   `appendMany` puts several batches under one fsync; the connector writes through
 *   `BufferWriter` (writer.ts), which groups writes so that commits never take more than a
 *   fixed share of the event loop on a slow disk.
 * - `ack` and `drop` commit with `synchronous = NORMAL`, which skips their fsync and about
 *   doubles small-batch throughput. A SIGKILL still loses nothing (the OS holds the write);
 *   a power loss can undo the acks since the last fsync (the next append's or a checkpoint's),
 *   which only sends those batches again: delivery is at-least-once anyway, and the
 *   counters roll back with the rows, so they stay exact.
 * - Every change to `batches` and the matching `counters` update is one transaction, so
 *   the invariant `appended = acked + dropped + stored items` holds after any crash.
 * - `PRAGMA quick_check` runs at open; a damaged file is reported (KerfError BUFFER_IO)
 *   rather than silently truncated. zstd payloads carry a checksum, so a flipped bit in a
 *   payload is detected on read; such a batch is dropped as `rejected` with an error log.
 * - `locking_mode = EXCLUSIVE`: a second process opening the same file fails at open,
 *   since two senders on one buffer would deliver everything twice.
 * - Delivery is at-least-once: a batch is deleted only by `ack` after the cloud confirmed it.
 *
 * ## Encryption (`encryption`, from `buffer.encryption.keyFile`)
 * Every stored payload is sealed with AES-256-GCM (seal.ts): a fresh random nonce per batch, and
 * as associated data the epoch, the batch id, its stored format (the codec's, with SEALED set)
 * and its item count. Ids are therefore chosen by `#insert` (the last id + 1) rather than by
 * SQLite, and a merged batch is sealed anew under the id of its row. `bytes` is the sealed size
 * (28 bytes more per batch), so `maxBytes` bounds what is really stored. The snapshot of what
 * was delivered is sealed too. A batch that fails authentication (altered, moved to another id,
 * or not sealed at all) is not sent: it is dropped as `tampered`, with one error line naming its
 * id (never its content), and the rest flows on. At open, encryption.ts refuses an encrypted
 * file without its key or with another key (a key check value in `meta`), and seals a plain
 * file in place when a key is first given. Without a key nothing changes: payloads are stored
 * as before.
 *
 * ## When full: `dropOldest`
 * The buffer is bounded by `maxBytes` of stored payload (the file itself is larger by
 * SQLite's page overhead and the WAL). An append that would exceed it first deletes the
 * oldest batches, lowest id first, until the new batch fits, in the same transaction.
 * Recent data is worth more to a monitoring connector than data from hours ago, and
 * blocking the OPC UA side would only move the loss into the server's queues.
 * Evictions are counted under `buffer_full` and logged at most once per second with the
 * running total. A batch larger than `maxBytes` on its own is dropped as `too_large`
 * (it still consumes an id) rather than emptying the buffer for it.
 *
 * ## Space reuse
 * Deleted pages go to SQLite's free list and new batches reuse them, so a steady flow
 * keeps the file at the size of its backlog. The file is created with
 * `auto_vacuum = INCREMENTAL`. Maintenance runs every 500 deletions, when the buffer has
 * drained and 5 s have passed since the last run, and at close. When at least a quarter of
 * the file is free, it returns free pages to the file system with `incremental_vacuum`
 * (at most 64 MiB per run while open, all at close); then `wal_checkpoint(TRUNCATE)`
 * empties the WAL.
 * Between those, SQLite's auto-checkpoint (1000 pages) and `journal_size_limit` (4 MiB)
 * bound the WAL.
 */
import { statSync } from "node:fs";
import type { Logger } from "../log.ts";
import { itemCount, type DropReason, type Item, type Message, type StoredBatch } from "../message.ts";
import type { DatabaseSync, StatementSync } from "node:sqlite";
import { decodeBytes, encodeBytes, encodeJson, parseMessages, type Encoded } from "./codec.ts";
import { LastDelivered } from "./delivered.ts";
import { DropLog } from "./drop-log.ts";
import { setUpEncryption, type EncryptionOptions } from "./encryption.ts";
import { COUNTER_NAMES, ioError, openDatabase, type CounterName } from "./schema.ts";
import { Kind, SEALED, Tampered, type Sealer } from "./seal.ts";
import { isKerfError, KerfError } from "../errors.ts";

export interface BufferStats {
  /** What is stored now (not yet acknowledged). */
  batches: number;
  items: number;
  bytes: number;
  /** Lifetime totals, persisted across restarts. */
  appendedItems: number;
  ackedItems: number;
  /** Lifetime item counts by reason, persisted. */
  dropped: Record<DropReason, number>;
  droppedItems: number;
  oldestCreatedAt: number | null;
}

export interface BufferOptions {
  /** The SQLite file; its directory is created if missing. */
  path: string;
  /** Upper bound on stored payload bytes; see "When full" above. */
  maxBytes: number;
  logger: Logger;
  /** zstd-compress payloads (default true: about 10x smaller for 1000-item batches and faster overall). */
  compress?: boolean;
  /** How often the snapshot of what was delivered is written; default 5 s (see above). */
  snapshotIntervalMs?: number;
  /** Seal every stored payload with this key (see "Encryption" above). */
  encryption?: EncryptionOptions;
}

const DROP_REASONS: readonly DropReason[] = ["buffer_full", "rejected", "too_large", "tampered"];
const MAINTAIN_EVERY_DELETES = 500;
const MAINTAIN_WHEN_DRAINED_MS = 5000;
/** Free pages returned per maintenance run, so one run stays short (64 MiB at 4 KiB pages). */
const VACUUM_PAGES_PER_RUN = 16384;
/** Vacuum only when the free list is at least this many pages and a quarter of the file. */
const VACUUM_MIN_FREE_PAGES = 256;
/** How often the snapshot of what was delivered is written by default (see above)... */
const SNAPSHOT_INTERVAL_MS = 5000;
/** ...or sooner, when acknowledged batches waiting for it take this much. */
const SNAPSHOT_KEPT_BYTES = 4 * 1024 * 1024;

interface Totals {
  batches: number;
  items: number;
  bytes: number;
}

/** What one transaction changed; applied to the in-memory state only after COMMIT. */
interface Delta extends Totals {
  counters: Record<CounterName, number>;
  evicted: { batches: number; items: number };
  tooLarge: { batches: number; items: number };
  deletes: number;
  /** Batches acknowledged, kept until a snapshot covers them. */
  kept: { batches: number; bytes: number };
  /** The highest id inserted. */
  lastId: number;
}

interface Row {
  id: number;
  created_at: number;
  items: number;
  bytes: number;
  format: number;
  payload: Uint8Array;
}

const dropCounter: Record<DropReason, CounterName> = {
  buffer_full: "dropped_buffer_full",
  rejected: "dropped_rejected",
  too_large: "dropped_too_large",
  tampered: "dropped_tampered",
};

/** A payload as it is stored: the codec's format (with SEALED when sealed) and bytes. */
interface Stored {
  format: number;
  payload: Uint8Array;
}

/** A stored batch that cannot be read back, and whether it failed authentication. */
interface Unreadable {
  id: number;
  error: string;
  tampered: boolean;
}

export class DurableBuffer {
  readonly epoch: string;
  readonly #db: DatabaseSync;
  readonly #path: string;
  readonly #maxBytes: number;
  readonly #compress: boolean;
  readonly #snapshotIntervalMs: number;
  readonly #log: Logger;
  /** Null when the buffer is not encrypted. */
  readonly #sealer: Sealer | null;
  readonly #stored: Totals;
  readonly #counters: Record<CounterName, number>;
  readonly #evictLog: DropLog;
  readonly #tooLargeLog: DropLog;
  readonly #sql: {
    insert: StatementSync;
    remove: StatementSync;
    markAcked: StatementSync;
    keptAcked: StatementSync;
    deleteAcked: StatementSync;
    writeDelivered: StatementSync;
    moveUpto: StatementSync;
    oldest: StatementSync;
    removeUpTo: StatementSync;
    head: StatementSync;
    pending: StatementSync;
    rewrite: StatementSync;
    setAttempted: StatementSync;
    bump: StatementSync;
    oldestTime: StatementSync;
  };
  #deletesSinceMaintenance = 0;
  #lastMaintenance = Date.now();
  #closed = false;
  #synchronous: "FULL" | "NORMAL" = "FULL";
  readonly #delivered: LastDelivered;
  /** The highest batch id handed out. */
  #lastId: number;
  #lastSnapshot = Date.now();
  /** Acknowledged batches that wait for a snapshot to delete them. */
  #kept = { batches: 0, bytes: 0 };
  /** Batches with a higher id have never been handed to a request (see markAttempted). */
  #attemptedThrough: number;

  /** Opens or creates the buffer at `options.path`; throws KerfError BUFFER_IO naming the path. */
  static open(options: BufferOptions): DurableBuffer {
    if (!Number.isSafeInteger(options.maxBytes) || options.maxBytes <= 0) {
      throw new KerfError("INTERNAL", `maxBytes must be a positive integer, got ${options.maxBytes}`);
    }
    const { db, epoch } = openDatabase(options.path);
    try {
      const sealer = setUpEncryption(db, options.path, epoch, options.encryption, options.logger);
      return new DurableBuffer(db, epoch, sealer, options);
    } catch (err) {
      db.close();
      if (isKerfError(err, "BUFFER_KEY")) throw err;
      throw ioError(options.path, "reading its state", err);
    }
  }

  private constructor(db: DatabaseSync, epoch: string, sealer: Sealer | null, options: BufferOptions) {
    this.#db = db;
    this.epoch = epoch;
    this.#sealer = sealer;
    this.#path = options.path;
    this.#maxBytes = options.maxBytes;
    this.#compress = options.compress ?? true;
    this.#snapshotIntervalMs = options.snapshotIntervalMs ?? SNAPSHOT_INTERVAL_MS;
    this.#log = options.logger;
    this.#sql = {
      insert: db.prepare("INSERT INTO batches (id, created_at, items, bytes, format, payload) VALUES (?, ?, ?, ?, ?, ?)"),
      remove: db.prepare("DELETE FROM batches WHERE id = ? AND acked = 0 RETURNING items, bytes, created_at"),
      markAcked: db.prepare("UPDATE batches SET acked = 1 WHERE id = ? AND acked = 0 RETURNING items, bytes, created_at"),
      keptAcked: db.prepare("SELECT count(*) AS batches, total(bytes) AS bytes FROM batches WHERE acked = 1"),
      deleteAcked: db.prepare("DELETE FROM batches WHERE acked = 1 AND id <= ?"),
      writeDelivered: db.prepare("INSERT OR REPLACE INTO delivered (id, upto, format, payload) VALUES (1, ?, ?, ?)"),
      moveUpto: db.prepare("UPDATE delivered SET upto = ? WHERE id = 1"),
      oldest: db.prepare("SELECT id, items, bytes FROM batches WHERE acked = 0 ORDER BY id"),
      removeUpTo: db.prepare("DELETE FROM batches WHERE acked = 0 AND id <= ?"),
      head: db.prepare("SELECT id, created_at, items, bytes, format, payload FROM batches WHERE acked = 0 ORDER BY id LIMIT ?"),
      pending: db.prepare("SELECT id, created_at, items, bytes, format, payload FROM batches WHERE acked = 0 ORDER BY id"),
      rewrite: db.prepare("UPDATE batches SET created_at = ?, items = ?, bytes = ?, format = ?, payload = ? WHERE id = ? AND acked = 0"),
      setAttempted: db.prepare("INSERT INTO meta (name, value) VALUES ('attempted_through', ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value"),
      bump: db.prepare("UPDATE counters SET value = value + ? WHERE name = ?"),
      oldestTime: db.prepare("SELECT min(created_at) AS t FROM batches WHERE acked = 0"),
    };
    const totals = db.prepare("SELECT count(*) AS batches, total(items) AS items, total(bytes) AS bytes FROM batches WHERE acked = 0").get() as unknown as Totals;
    this.#stored = { batches: Number(totals.batches), items: Number(totals.items), bytes: Number(totals.bytes) };
    const rows = db.prepare("SELECT name, value FROM counters").all() as { name: string; value: number }[];
    const counters = Object.fromEntries(rows.map((r) => [r.name, r.value]));
    for (const name of COUNTER_NAMES) {
      if (typeof counters[name] !== "number") throw new KerfError("BUFFER_CORRUPT", `counter ${name} is missing from the counters table`);
    }
    this.#counters = counters as Record<CounterName, number>;
    this.#lastId = Number((db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'batches'").get() as { seq: number } | undefined)?.seq ?? 0);
    this.#delivered = this.#readDelivered();
    this.#kept = this.#keptAcked();
    const attempted = db.prepare("SELECT value FROM meta WHERE name = 'attempted_through'").get() as { value: string } | undefined;
    if (attempted) this.#attemptedThrough = Number(attempted.value);
    else {
      // A new file, or one from before this mark existed: every batch in it may have been sent.
      this.#attemptedThrough = this.#lastId;
      this.#sql.setAttempted.run(String(this.#attemptedThrough));
    }
    this.#evictLog = new DropLog((batches, items) => {
      this.#log.warn(
        { event: "buffer_full", reason: "buffer_full", batches, items, totalDroppedItems: this.#counters.dropped_buffer_full, maxBytes: this.#maxBytes },
        `buffer full: dropped the ${batches} oldest batches (${items} items) to make room; ${this.#counters.dropped_buffer_full} items dropped so far`,
      );
    });
    this.#tooLargeLog = new DropLog((batches, items) => {
      this.#log.warn(
        { event: "buffer_drop", reason: "too_large", batches, items, totalDroppedItems: this.#counters.dropped_too_large, maxBytes: this.#maxBytes },
        `dropped ${batches} batches (${items} items) each larger than the whole buffer (maxBytes ${this.#maxBytes})`,
      );
    });
  }

  /**
   * Stores one batch and returns its id. Synchronous; when it returns, the batch is on disk.
   * May evict the oldest batches first (see "When full").
   */
  append(messages: Message[]): number {
    return this.appendMany([messages])[0]!;
  }

  /**
   * Stores several batches in one transaction, so one fsync covers them all, and returns
   * their ids in order. Synchronous; when it returns, every batch is on disk. `dropped` counts
   * items that never reached the buffer (see writer.ts) as appended and dropped `buffer_full`.
   */
  appendMany(batches: readonly Message[][], options: { dropped?: number } = {}): number[] {
    this.#assertOpen();
    const dropped = options.dropped ?? 0;
    if (batches.length === 0 && dropped === 0) return [];
    for (const messages of batches) {
      if (!Array.isArray(messages) || messages.length === 0) throw new KerfError("INTERNAL", "append needs at least one message");
    }
    const encoded = batches.map((messages) => ({ encoded: encodeJson(messages, this.#compress), items: itemCount(messages) }));
    const createdAt = Date.now();
    const ids = this.#transaction("append", "FULL", (delta) => {
      delta.counters.appended_items += dropped;
      delta.counters.dropped_buffer_full += dropped;
      return encoded.map((b) => {
        delta.counters.appended_items += b.items;
        return this.#insert(b.encoded, b.items, createdAt, delta);
      });
    });
    for (const messages of batches) this.#delivered.note(messages);
    this.#snapshotIfDue();
    return ids;
  }

  /**
   * The last data item appended for each of `keys` of `machine`, also in an earlier process:
   * the session's starting point for telling a repeated value from a new one. Keys not in
   * `keys` (no longer mapped) are forgotten.
   */
  lastDelivered(machine: string, keys: ReadonlySet<string>): Map<string, Item> {
    this.#assertOpen();
    return this.#delivered.take(machine, keys);
  }

  /** Up to `limit` batches, oldest first, skipping the ids in `exclude` (those in flight). */
  next(limit: number, exclude: ReadonlySet<number> = new Set()): StoredBatch[] {
    this.#assertOpen();
    if (limit <= 0) return [];
    // Among the first limit + |exclude| rows at most |exclude| are skipped.
    const rows = this.#sql.head.all(limit + exclude.size) as unknown as Row[];
    const out: StoredBatch[] = [];
    const unreadable: Unreadable[] = [];
    for (const row of rows) {
      if (out.length === limit) break;
      if (exclude.has(row.id)) continue;
      const json = this.#readPayload(row, unreadable);
      if (json) out.push(storedBatch(row, json));
    }
    if (unreadable.length > 0) {
      // Stopping the sender forever on one damaged row would lose everything behind it.
      this.#dropUnreadable(unreadable);
      return this.next(limit, exclude);
    }
    return out;
  }

  /**
   * Up to `limit` batches like `next`, where consecutive batches that were never handed to a
   * request are first merged, within `limits` (JSON bytes, items), into one (see "Merging a
   * backlog"). The merge is committed (fsynced) before it is returned: a merge undone by a power
   * loss after its request would bring back batches whose items the cloud already has.
   */
  nextMerged(limit: number, exclude: ReadonlySet<number>, limits: { maxItems: number; maxBytes: number }): StoredBatch[] {
    this.#assertOpen();
    if (limit <= 0) return [];
    // Plan first, write after: no transaction while the read is still open.
    const groups: { row: Row; json: Buffer }[][] = [];
    const unreadable: Unreadable[] = [];
    let group: { row: Row; json: Buffer }[] = [];
    let items = 0;
    let bytes = 0;
    const close = () => {
      if (group.length > 0) groups.push(group);
      group = [];
    };
    for (const row of this.#sql.pending.iterate() as Iterable<Row>) {
      if (exclude.has(row.id)) {
        close();
        if (groups.length === limit) break;
        continue;
      }
      const json = this.#readPayload(row, unreadable);
      if (!json) continue;
      if (group.length > 0 && items + row.items <= limits.maxItems && bytes + json.length + 1 <= limits.maxBytes) {
        group.push({ row, json });
        items += row.items;
        bytes += json.length + 1;
        continue;
      }
      close();
      if (groups.length === limit) break;
      group = [{ row, json }];
      items = row.items;
      bytes = json.length;
      // a batch that may have been sent goes alone (and so do all before it: ids only grow)
      if (row.id <= this.#attemptedThrough) close();
      if (groups.length === limit) break;
    }
    close();
    const out = groups.map((g) => (g.length === 1 ? storedBatch(g[0]!.row, g[0]!.json) : (this.#merge(g) ?? storedBatch(g[0]!.row, g[0]!.json))));
    this.#dropUnreadable(unreadable);
    return out;
  }

  /**
   * Batch `id` is about to go into a request: the cloud may know its idempotency key from now
   * on, so it is never merged. Committed without an fsync: it reaches the operating system
   * before the request leaves, so only a power loss in the few milliseconds before the next
   * append's fsync could forget it.
   */
  markAttempted(id: number): void {
    this.#assertOpen();
    if (id <= this.#attemptedThrough) return;
    this.#transaction("mark", "NORMAL", () => this.#sql.setAttempted.run(String(id)));
    this.#attemptedThrough = id;
  }

  /**
   * The cloud confirmed batch `id`: it leaves the queue (the next snapshot deletes it, see
   * above). An unknown id (dropped meanwhile) is a no-op.
   */
  ack(id: number): void {
    this.#assertOpen();
    this.#transaction("ack", "NORMAL", (delta) => {
      const row = this.#sql.markAcked.get(id) as { items: number; bytes: number } | undefined;
      if (!row) return;
      delta.batches -= 1;
      delta.items -= row.items;
      delta.bytes -= row.bytes;
      delta.counters.acked_items += row.items;
      delta.kept.batches += 1;
      delta.kept.bytes += row.bytes;
    });
    this.#snapshotIfDue();
  }

  /**
   * Atomically replaces batch `id` by one new batch per part (new ids, after all others);
   * used to split a batch the cloud refused as too large. The parts keep the original's
   * `createdAt`. Returns the new ids, or [] if `id` is no longer stored.
   */
  replace(id: number, parts: Message[][]): number[] {
    this.#assertOpen();
    if (parts.length === 0 || parts.some((p) => !Array.isArray(p) || p.length === 0)) {
      throw new KerfError("INTERNAL", "replace needs at least one part, each with at least one message");
    }
    const encoded = parts.map((p) => ({ encoded: encodeJson(p, this.#compress), items: itemCount(p) }));
    return this.#transaction("replace", "FULL", (delta) => {
      const row = this.#remove(id, delta);
      if (!row) return [];
      // Splitting should keep the item count; if a caller's split does not,
      // the difference counts as appended so the invariant still holds.
      const partItems = encoded.reduce((n, p) => n + p.items, 0);
      delta.counters.appended_items += partItems - row.items;
      return encoded.map((p) => this.#insert(p.encoded, p.items, row.created_at, delta));
    });
  }

  /** Deletes batch `id` without delivery, counting its items under `reason`. Unknown id = no-op. */
  drop(id: number, reason: DropReason, detail: string): void {
    this.#assertOpen();
    if (!DROP_REASONS.includes(reason)) throw new KerfError("INTERNAL", `unknown drop reason ${String(reason)}`);
    const row = this.#dropRow(id, reason);
    if (row) {
      this.#log.warn({ event: "buffer_drop", id, items: row.items, reason, detail }, `dropped batch ${id} (${row.items} items): ${reason}: ${detail}`);
    } else {
      this.#log.debug({ event: "buffer_drop", id, reason }, `batch ${id} to drop is no longer stored`);
    }
  }

  /** Whether stored payloads are sealed (see "Encryption"). */
  get encrypted(): boolean {
    return this.#sealer !== null;
  }

  stats(): BufferStats {
    this.#assertOpen();
    const c = this.#counters;
    const dropped: Record<DropReason, number> = {
      buffer_full: c.dropped_buffer_full,
      rejected: c.dropped_rejected,
      too_large: c.dropped_too_large,
      tampered: c.dropped_tampered,
    };
    const oldest = (this.#sql.oldestTime.get() as { t: number | null }).t;
    return {
      ...this.#stored,
      appendedItems: c.appended_items,
      ackedItems: c.acked_items,
      dropped,
      droppedItems: dropped.buffer_full + dropped.rejected + dropped.too_large + dropped.tampered,
      oldestCreatedAt: oldest,
    };
  }

  /**
   * Writes pending drop logs and the snapshot of what was delivered, compacts, and closes the
   * file. Idempotent. `compact: false` returns free pages only as far as one maintenance run
   * does (a stop with little time left).
   */
  close(options: { compact?: boolean } = {}): void {
    if (this.#closed) return;
    this.#evictLog.flush();
    this.#tooLargeLog.flush();
    this.#snapshot();
    this.#closed = true;
    if (options.compact === false) this.#maintain(VACUUM_PAGES_PER_RUN, VACUUM_MIN_FREE_PAGES);
    else this.#maintain(Number.MAX_SAFE_INTEGER, 1);
    this.#db.close();
  }

  /**
   * One batch from several consecutive ones, in the newest one's row (see "Merging a
   * backlog"); null when the merged payload would not fit in maxBytes (possible after
   * `compress` was switched off).
   */
  #merge(group: { row: Row; json: Buffer }[]): StoredBatch | null {
    const parts: Buffer[] = [];
    group.forEach((g, i) => parts.push(i === 0 ? Buffer.from("[") : Buffer.from(","), g.json.subarray(1, g.json.length - 1)));
    parts.push(Buffer.from("]"));
    const json = Buffer.concat(parts);
    const last = group[group.length - 1]!.row;
    const items = group.reduce((n, g) => n + g.row.items, 0);
    const stored = this.#seal(encodeBytes(json, this.#compress), last.id, items);
    const bytes = stored.payload.byteLength;
    const createdAt = Math.min(...group.map((g) => g.row.created_at));
    const partsBytes = group.reduce((n, g) => n + g.row.bytes, 0);
    if (this.#stored.bytes - partsBytes + bytes > this.#maxBytes) return null;
    this.#transaction("merge", "FULL", (delta) => {
      for (const g of group.slice(0, -1)) this.#remove(g.row.id, delta);
      this.#sql.rewrite.run(createdAt, items, bytes, stored.format, stored.payload, last.id);
      delta.items += items - last.items;
      delta.bytes += bytes - last.bytes;
    });
    return { ...storedBatch({ ...last, created_at: createdAt, items, bytes }, json), parts: group.map((g) => g.row.items) };
  }

  // --- inside a transaction -------------------------------------------------

  /** Inserts one batch, evicting the oldest or refusing it as too large. Returns its id. */
  #insert(encoded: Encoded, items: number, createdAt: number, delta: Delta): number {
    // The id is chosen here rather than by SQLite, so that a sealed payload can be bound to it.
    // Ids still only grow: the insert moves AUTOINCREMENT's sequence up to it.
    const id = Math.max(this.#lastId, delta.lastId) + 1;
    delta.lastId = id;
    const stored = this.#seal(encoded, id, items);
    const bytes = stored.payload.byteLength;
    if (bytes > this.#maxBytes) {
      // Insert an empty row and delete it at once: the batch consumes an id like any other.
      this.#sql.insert.run(id, createdAt, items, 0, stored.format, new Uint8Array(0));
      this.#sql.remove.run(id);
      delta.counters.dropped_too_large += items;
      delta.tooLarge.batches += 1;
      delta.tooLarge.items += items;
      return id;
    }
    const excess = this.#stored.bytes + delta.bytes + bytes - this.#maxBytes;
    if (excess > 0) this.#evict(excess, delta);
    this.#sql.insert.run(id, createdAt, items, bytes, stored.format, stored.payload);
    delta.batches += 1;
    delta.items += items;
    delta.bytes += bytes;
    return id;
  }

  /** Deletes the oldest batches until at least `excess` bytes are freed. */
  #evict(excess: number, delta: Delta): void {
    let freed = 0;
    let items = 0;
    let batches = 0;
    let lastId = -1;
    for (const row of this.#sql.oldest.iterate() as Iterable<{ id: number; items: number; bytes: number }>) {
      freed += row.bytes;
      items += row.items;
      batches += 1;
      lastId = row.id;
      if (freed >= excess) break;
    }
    if (batches === 0) return;
    this.#sql.removeUpTo.run(lastId);
    delta.batches -= batches;
    delta.items -= items;
    delta.bytes -= freed;
    delta.deletes += batches;
    delta.counters.dropped_buffer_full += items;
    delta.evicted.batches += batches;
    delta.evicted.items += items;
  }

  #remove(id: number, delta: Delta): { items: number; bytes: number; created_at: number } | undefined {
    const row = this.#sql.remove.get(id) as { items: number; bytes: number; created_at: number } | undefined;
    if (row) {
      delta.batches -= 1;
      delta.items -= row.items;
      delta.bytes -= row.bytes;
      delta.deletes += 1;
    }
    return row;
  }

  /** Runs `fn` in one IMMEDIATE transaction; in-memory state changes only after COMMIT. */
  #transaction<T>(what: string, synchronous: "FULL" | "NORMAL", fn: (delta: Delta) => T): T {
    const delta: Delta = {
      batches: 0,
      items: 0,
      bytes: 0,
      counters: { appended_items: 0, acked_items: 0, dropped_buffer_full: 0, dropped_rejected: 0, dropped_too_large: 0, dropped_tampered: 0 },
      evicted: { batches: 0, items: 0 },
      tooLarge: { batches: 0, items: 0 },
      deletes: 0,
      kept: { batches: 0, bytes: 0 },
      lastId: 0,
    };
    let result: T;
    try {
      if (this.#synchronous !== synchronous) {
        this.#db.exec(`PRAGMA synchronous = ${synchronous}`);
        this.#synchronous = synchronous;
      }
      this.#db.exec("BEGIN IMMEDIATE");
      result = fn(delta);
      for (const name of COUNTER_NAMES) {
        if (delta.counters[name] !== 0) this.#sql.bump.run(delta.counters[name], name);
      }
      this.#db.exec("COMMIT");
    } catch (err) {
      try {
        if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      } catch {
        // The original error is the one worth reporting.
      }
      throw ioError(this.#path, what, err);
    }
    this.#stored.batches += delta.batches;
    this.#stored.items += delta.items;
    this.#stored.bytes += delta.bytes;
    for (const name of COUNTER_NAMES) this.#counters[name] += delta.counters[name];
    if (delta.evicted.batches > 0) this.#evictLog.add(delta.evicted.batches, delta.evicted.items);
    if (delta.tooLarge.batches > 0) this.#tooLargeLog.add(delta.tooLarge.batches, delta.tooLarge.items);
    this.#lastId = Math.max(this.#lastId, delta.lastId);
    this.#kept.batches += delta.kept.batches;
    this.#kept.bytes += delta.kept.bytes;
    if (delta.deletes > 0) this.#afterDeletes(delta.deletes);
    return result;
  }

  // --- what was delivered --------------------------------------------------------

  /** The snapshot and the batches above it, as they were at the last close or kill. */
  #readDelivered(): LastDelivered {
    const row = this.#db.prepare("SELECT upto, format, payload FROM delivered WHERE id = 1").get() as { upto: number; format: number; payload: Uint8Array } | undefined;
    let delivered = new LastDelivered();
    let upto = 0;
    if (row) {
      try {
        delivered = LastDelivered.decode(row.format, this.#sealer ? this.#sealer.open(Kind.delivered, row.payload, 0, row.format) : row.payload);
        upto = row.upto;
      } catch (err) {
        // Only repeats are at stake: without the snapshot, unchanged values may be sent once more.
        this.#log.error({ event: "buffer_unreadable", error: (err as Error).message }, "the snapshot of delivered values is unreadable; unchanged values may be sent again once");
      }
    }
    for (const b of this.#db.prepare("SELECT id, items, format, payload FROM batches WHERE id > ? ORDER BY id").iterate(upto) as Iterable<Pick<Row, "id" | "items" | "format" | "payload">>) {
      try {
        delivered.merge(parseMessages(this.#decode(b)));
        // The snapshot row lacks these items: the next snapshot must write the table, not only
        // move `upto` over them (and delete the acknowledged batches that held them).
        delivered.dirty = true;
      } catch {
        // next() reports and drops an unreadable pending batch; an acknowledged one no longer matters
      }
    }
    return delivered;
  }

  #keptAcked(): { batches: number; bytes: number } {
    const r = this.#sql.keptAcked.get() as { batches: number; bytes: number };
    return { batches: Number(r.batches), bytes: Number(r.bytes) };
  }

  /** Due every snapshotIntervalMs, or once SNAPSHOT_KEPT_BYTES of acknowledged batches wait. */
  #snapshotIfDue(): void {
    if (!this.#delivered.dirty && this.#kept.batches === 0) return;
    if (Date.now() - this.#lastSnapshot < this.#snapshotIntervalMs && this.#kept.bytes < SNAPSHOT_KEPT_BYTES) return;
    this.#snapshot();
  }

  /**
   * Writes the table of what was delivered, covering every batch so far, and deletes the
   * acknowledged batches it covers, in one transaction. Never throws: a failure only delays it.
   */
  #snapshot(): void {
    this.#lastSnapshot = Date.now();
    if (!this.#delivered.dirty && this.#kept.batches === 0) return;
    let deleted = 0;
    try {
      if (this.#synchronous !== "NORMAL") {
        this.#db.exec("PRAGMA synchronous = NORMAL");
        this.#synchronous = "NORMAL";
      }
      this.#db.exec("BEGIN IMMEDIATE");
      // Every batch up to #lastId has been noted (split parts hold items noted before), so the
      // table covers them all; unchanged, only `upto` moves.
      const upto = this.#lastId;
      if (this.#delivered.dirty || Number(this.#sql.moveUpto.run(upto).changes) === 0) {
        const encoded = this.#delivered.encode();
        const payload = this.#sealer ? this.#sealer.seal(Kind.delivered, encoded.payload, 0, encoded.format) : encoded.payload;
        this.#sql.writeDelivered.run(upto, encoded.format, payload);
      }
      deleted = Number(this.#sql.deleteAcked.run(upto).changes);
      this.#db.exec("COMMIT");
    } catch (err) {
      try {
        if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      } catch {
        // the original error is the one worth reporting
      }
      this.#delivered.dirty = true;
      this.#log.warn({ event: "buffer_snapshot", error: err instanceof Error ? err.message : String(err) }, `buffer ${this.#path}: writing the snapshot of delivered values failed; retrying later`);
      return;
    }
    this.#kept = this.#keptAcked();
    if (deleted > 0) this.#afterDeletes(deleted);
  }

  // --- space reuse ------------------------------------------------------------

  #afterDeletes(n: number): void {
    this.#deletesSinceMaintenance += n;
    const drained = this.#stored.batches === 0 && Date.now() - this.#lastMaintenance >= MAINTAIN_WHEN_DRAINED_MS;
    if (this.#deletesSinceMaintenance >= MAINTAIN_EVERY_DELETES || drained) this.#maintain(VACUUM_PAGES_PER_RUN, VACUUM_MIN_FREE_PAGES);
  }

  /** Returns a large free list to the file system and truncates the WAL. Never throws. */
  #maintain(maxPages: number, minFreePages: number): void {
    this.#deletesSinceMaintenance = 0;
    this.#lastMaintenance = Date.now();
    try {
      const free = (this.#db.prepare("PRAGMA freelist_count").get() as { freelist_count: number }).freelist_count;
      const pages = (this.#db.prepare("PRAGMA page_count").get() as { page_count: number }).page_count;
      if (free >= minFreePages && free * 4 >= pages) {
        this.#db.exec(`PRAGMA incremental_vacuum(${Math.min(free, maxPages)})`);
      }
      this.#db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    } catch (err) {
      // Compaction is housekeeping: a failure must not fail the ack that triggered it.
      this.#log.warn({ event: "buffer_maintenance", error: err instanceof Error ? err.message : String(err) }, `buffer ${this.#path}: compaction failed`);
    }
  }

  // --- sealed payloads (see "Encryption") ----------------------------------------------

  /** A batch's payload as it is stored: sealed and bound to its id and item count when encrypted. */
  #seal(encoded: Encoded, id: number, items: number): Stored {
    if (!this.#sealer) return encoded;
    const format = encoded.format | SEALED;
    return { format, payload: this.#sealer.seal(Kind.batch, encoded.payload, id, format, items) };
  }

  /** A stored batch's JSON bytes; throws Tampered when a sealed one fails authentication. */
  #decode(row: Pick<Row, "id" | "items" | "format" | "payload">): Buffer {
    if (!this.#sealer) return decodeBytes(row.format, row.payload);
    // In an encrypted buffer every batch is sealed: one that is not was put there from outside.
    if ((row.format & SEALED) === 0) throw new Tampered();
    return decodeBytes(row.format & ~SEALED, this.#sealer.open(Kind.batch, row.payload, row.id, row.format, row.items));
  }

  /** A row's JSON bytes; null (and the row noted in `unreadable`) when they cannot be decoded. */
  #readPayload(row: Row, unreadable: Unreadable[]): Buffer | null {
    try {
      return this.#decode(row);
    } catch (err) {
      unreadable.push({ id: row.id, error: err instanceof Error ? err.message : String(err), tampered: err instanceof Tampered });
      return null;
    }
  }

  /** Drops what could not be read back: `tampered` with one error line per batch (never its content), else `rejected`. */
  #dropUnreadable(unreadable: readonly Unreadable[]): void {
    for (const u of unreadable) {
      if (!u.tampered) {
        this.#log.error({ event: "buffer_unreadable", id: u.id, error: u.error }, `buffer batch ${u.id} is unreadable (${u.error}); dropping it`);
        this.drop(u.id, "rejected", `stored payload unreadable: ${u.error}`);
        continue;
      }
      const row = this.#dropRow(u.id, "tampered");
      if (row) {
        this.#log.error(
          { event: "buffer_tampered", reason: "tampered", id: u.id, items: row.items, totalDroppedItems: this.#counters.dropped_tampered },
          `buffer batch ${u.id} failed authentication (altered, moved to another id, or sealed with another key): its ${row.items} items are dropped as tampered, not sent`,
        );
      }
    }
  }

  /** Deletes batch `id` and counts its items under `reason`, in one transaction; the row, if it was stored. */
  #dropRow(id: number, reason: DropReason): { items: number } | undefined {
    return this.#transaction("drop", "NORMAL", (delta) => {
      const removed = this.#remove(id, delta);
      if (removed) delta.counters[dropCounter[reason]] += removed.items;
      return removed;
    });
  }

  #assertOpen(): void {
    if (this.#closed) throw new KerfError("BUFFER_CLOSED", `buffer ${this.#path} is closed`);
  }
}

function storedBatch(row: Row, json: Buffer): StoredBatch {
  let messages: Message[] | undefined;
  return {
    id: row.id,
    json,
    items: row.items,
    bytes: row.bytes,
    createdAt: row.created_at,
    get messages() {
      return (messages ??= parseMessages(json));
    },
  };
}

/** What a buffer file takes on disk now: the database plus its WAL (absent right after a checkpoint or close). */
export function diskBytes(path: string): number {
  let n = 0;
  for (const suffix of ["", "-wal"]) {
    try {
      n += statSync(path + suffix).size;
    } catch {
      // no such file
    }
  }
  return n;
}
