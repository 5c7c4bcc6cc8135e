import { randomUUID } from "node:crypto";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { KerfError } from "../errors.ts";

/** Marks the file as a Kerf buffer ("KERF"), so a foreign SQLite file is refused. */
const APPLICATION_ID = 0x4b455246;
const SCHEMA_VERSION = 3;
/** The WAL is truncated back to this size after a checkpoint resets it. */
export const JOURNAL_SIZE_LIMIT = 4 * 1024 * 1024;

export const COUNTER_NAMES = [
  "appended_items",
  "acked_items",
  "dropped_buffer_full",
  "dropped_rejected",
  "dropped_too_large",
  "dropped_tampered",
] as const;
export type CounterName = (typeof COUNTER_NAMES)[number];

const SCHEMA_V1 = `
CREATE TABLE meta (
  name  TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;
CREATE TABLE counters (
  name  TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) STRICT;
-- AUTOINCREMENT: ids are never reused, even after every row is deleted.
CREATE TABLE batches (
  id         INTEGER PRIMARY KEY AUTOINCREMENT,
  created_at INTEGER NOT NULL,
  items      INTEGER NOT NULL,
  bytes      INTEGER NOT NULL,
  format     INTEGER NOT NULL,
  payload    BLOB NOT NULL
) STRICT;
-- Split batches keep their original time but get new ids, so the oldest time
-- is not always the lowest id.
CREATE INDEX batches_created_at ON batches (created_at);
`;

/** Version 2: acknowledged batches are kept until a snapshot of what was delivered covers them. */
const V2 = `
ALTER TABLE batches ADD COLUMN acked INTEGER NOT NULL DEFAULT 0;
CREATE INDEX batches_acked ON batches (acked, id);
CREATE TABLE delivered (
  id      INTEGER PRIMARY KEY CHECK (id = 1),
  upto    INTEGER NOT NULL,
  format  INTEGER NOT NULL,
  payload BLOB NOT NULL
) STRICT;
`;
/**
 * Version 3: payloads may be sealed (seal.ts; meta `cipher` and `key_check`, stored formats with
 * the SEALED bit), and drops as `tampered` are counted. A Kerf that reads only version 2 refuses
 * the file instead of misreading sealed payloads.
 */
const V3 = `
INSERT OR IGNORE INTO counters (name, value) VALUES ('dropped_tampered', 0);
`;
const SCHEMA = SCHEMA_V1 + V2;

export function ioError(path: string, doing: string, err: unknown): KerfError {
  const reason = err instanceof Error ? err.message : String(err);
  return new KerfError("BUFFER_IO", `buffer ${path}: ${doing} failed: ${reason}`, { cause: err });
}

/**
 * Opens (or creates) the buffer database and returns it with its epoch.
 * Every failure is a KerfError BUFFER_IO naming the path.
 */
export function openDatabase(path: string): { db: DatabaseSync; epoch: string } {
  try {
    mkdirSync(dirname(path), { recursive: true });
  } catch (err) {
    throw ioError(path, "creating its directory", err);
  }
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(path);
  } catch (err) {
    throw ioError(path, "opening", err);
  }
  try {
    configure(db, path);
    checkIntegrity(db, path);
    const epoch = migrate(db, path);
    return { db, epoch };
  } catch (err) {
    db.close();
    throw err instanceof KerfError ? err : ioError(path, "opening", err);
  }
}

function configure(db: DatabaseSync, path: string): void {
  try {
    // One process owns a buffer: a second connector on the same state dir would
    // send every batch twice. EXCLUSIVE also keeps the WAL index in process memory.
    db.exec("PRAGMA locking_mode = EXCLUSIVE");
    db.exec("PRAGMA busy_timeout = 0");
    // Only takes effect on a new, empty file (before the first table exists).
    db.exec("PRAGMA auto_vacuum = INCREMENTAL");
    const mode = db.prepare("PRAGMA journal_mode = WAL").get() as { journal_mode: string };
    if (mode.journal_mode !== "wal") throw new KerfError("BUFFER_IO", `journal_mode is ${mode.journal_mode}, expected wal`);
    db.exec("PRAGMA synchronous = FULL");
    db.exec(`PRAGMA journal_size_limit = ${JOURNAL_SIZE_LIMIT}`);
    // Take the lock now, so "in use" is reported at open rather than at the first append.
    db.exec("BEGIN IMMEDIATE; COMMIT");
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (/locked|busy/i.test(message)) {
      throw new KerfError("BUFFER_IO", `buffer ${path} is in use by another process (database is locked)`, { cause: err });
    }
    if (/not a database/i.test(message)) {
      throw new KerfError("BUFFER_IO", `buffer ${path} is not an SQLite database (found other content)`, { cause: err });
    }
    throw ioError(path, "opening", err);
  }
}

function checkIntegrity(db: DatabaseSync, path: string): void {
  let lines: string[];
  try {
    lines = (db.prepare("PRAGMA quick_check").all() as { quick_check: string }[]).map((r) => r.quick_check);
  } catch (err) {
    throw corrupt(path, [err instanceof Error ? err.message : String(err)], err);
  }
  if (lines.length !== 1 || lines[0] !== "ok") throw corrupt(path, lines.slice(0, 10));
}

function corrupt(path: string, findings: string[], cause?: unknown): KerfError {
  return new KerfError("BUFFER_IO", `buffer ${path} is corrupt: quick_check found problems (expected "ok")`, {
    cause,
    details: [
      ...findings,
      `move ${path} (and its -wal file) aside to start with an empty buffer; the batches it holds are not sent`,
    ],
  });
}

/** Creates the schema on a new file, checks it on an existing one; returns the epoch. */
function migrate(db: DatabaseSync, path: string): string {
  const pragma = (name: string): number => Number(Object.values(db.prepare(`PRAGMA ${name}`).get() ?? {})[0]);
  const version = pragma("user_version");
  const appId = pragma("application_id");
  if (version === 0) {
    const tables = (db.prepare("SELECT count(*) AS n FROM sqlite_schema").get() as { n: number }).n;
    if (tables !== 0) {
      throw new KerfError("BUFFER_IO", `buffer ${path} is an SQLite database of another program (expected a Kerf buffer or a new file)`);
    }
    const epoch = randomUUID();
    db.exec("BEGIN IMMEDIATE");
    try {
      db.exec(SCHEMA);
      db.prepare("INSERT INTO meta (name, value) VALUES ('epoch', ?)").run(epoch);
      const insert = db.prepare("INSERT OR IGNORE INTO counters (name, value) VALUES (?, 0)");
      for (const name of COUNTER_NAMES) insert.run(name);
      db.exec(`PRAGMA application_id = ${APPLICATION_ID}`);
      db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
      db.exec("COMMIT");
    } catch (err) {
      if (db.isTransaction) db.exec("ROLLBACK");
      throw ioError(path, "creating the schema", err);
    }
    return epoch;
  }
  if (appId !== APPLICATION_ID) {
    throw new KerfError("BUFFER_IO", `buffer ${path} is an SQLite database of another program (application_id ${appId}, expected ${APPLICATION_ID})`);
  }
  if (version === 1 || version === 2) upgrade(db, path, version);
  else if (version !== SCHEMA_VERSION) {
    throw new KerfError("BUFFER_IO", `buffer ${path} has schema version ${version}; this Kerf reads version ${SCHEMA_VERSION}`);
  }
  const row = db.prepare("SELECT value FROM meta WHERE name = 'epoch'").get() as { value: string } | undefined;
  if (row === undefined) throw new KerfError("BUFFER_IO", `buffer ${path} has no epoch in its meta table (expected one since creation)`);
  return row.value;
}

/**
 * A version 1 file gains the acked flag and the delivered snapshot, a version 2 file the
 * `tampered` counter; nothing else changes.
 */
function upgrade(db: DatabaseSync, path: string, from: number): void {
  db.exec("BEGIN IMMEDIATE");
  try {
    if (from === 1) db.exec(V2);
    db.exec(V3);
    db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
    db.exec("COMMIT");
  } catch (err) {
    if (db.isTransaction) db.exec("ROLLBACK");
    throw ioError(path, `upgrading the schema to version ${SCHEMA_VERSION}`, err);
  }
}
