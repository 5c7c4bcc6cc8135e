/**
 * The local audit log of remote commands: one row per event (a command accepted, a command
 * refused, a command's result), in SQLite, append-only and hash-chained.
 *
 * Each row's hash is sha256(previous row's hash + the row's canonical JSON, its seq included), the
 * first row chained to GENESIS. Editing, deleting or reordering a row breaks the chain at that
 * row; `verify()` finds the first such row. Deleting the newest rows leaves a shorter chain that
 * is still whole, so the head (last seq and hash) is also kept in `meta`, written in the same
 * transaction. Someone who may write the file can still rewrite the whole chain and its head: the
 * copy sent upstream (the cloud keeps the head it last received) is what anchors it.
 * Triggers refuse UPDATE and DELETE, so that a mistake with a SQL tool does not rewrite history.
 */
import { createHash } from "node:crypto";
import path from "node:path";
import type { DatabaseSync, StatementSync } from "node:sqlite";
import { canonicalize } from "@tufjs/canonical-json";
import { openStore, storeError } from "./sqlite.ts";

/** "KAUD" */
const APPLICATION_ID = 0x4b415544;
export const GENESIS = "0".repeat(64);
export const OUTCOMES = ["accepted", "refused", "result"] as const;
export type Outcome = (typeof OUTCOMES)[number];

const SCHEMA = `
CREATE TABLE audit (
  seq         INTEGER PRIMARY KEY,
  at          TEXT NOT NULL,
  jti         TEXT,
  app         TEXT,
  user        TEXT,
  action      TEXT,
  args_sha256 TEXT,
  outcome     TEXT NOT NULL CHECK (outcome IN ('accepted', 'refused', 'result')),
  reason      TEXT,
  result      TEXT,
  prev        TEXT NOT NULL,
  hash        TEXT NOT NULL
) STRICT;
CREATE TABLE meta (
  name  TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;
INSERT INTO meta (name, value) VALUES ('head_seq', '0'), ('head_hash', '${GENESIS}'), ('sent_seq', '0');
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
`;

/** What is recorded about one event. Text fields are the claims as the envelope stated them. */
export interface AuditEvent {
  jti?: string;
  /** The partner app (client_id). */
  app?: string;
  /** The user the app acted for (sub). */
  user?: string;
  action?: string;
  /** The command's arguments: only their digest is kept (values written can be confidential). */
  args?: unknown;
  outcome: Outcome;
  /** For a refusal: its code and reason, e.g. "scope_denied: scope ... does not allow write". */
  reason?: string;
  /** For a result: e.g. "succeeded", "failed: BadTypeMismatch". */
  result?: string;
}

export interface AuditRow {
  seq: number;
  at: string;
  jti: string | null;
  app: string | null;
  user: string | null;
  action: string | null;
  argsSha256: string | null;
  outcome: Outcome;
  reason: string | null;
  result: string | null;
  prev: string;
  hash: string;
}

export type Verification = { ok: true; rows: number; head: string } | { ok: false; seq: number; problem: string };

const COLUMNS = "seq, at, jti, app, user, action, args_sha256 AS argsSha256, outcome, reason, result, prev, hash";
const MAX_TEXT = 1024;

/** Where the agent keeps the audit log in its state directory. */
export function auditFile(stateDir: string): string {
  return path.join(stateDir, "commands", "audit.db");
}

/**
 * sha256 of the arguments' canonical JSON (RFC 8785 JCS: sorted keys, ECMAScript number text):
 * the same arguments give the same digest. Not the TUF canonical JSON of the rows: that one
 * cannot encode a fractional number, and a written value often is one.
 */
export function argsDigest(args: unknown): string {
  return createHash("sha256").update(jcs(args ?? null)).digest("hex");
}

function jcs(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(jcs).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value).filter(([, v]) => v !== undefined);
    // default sort compares UTF-16 code units, as RFC 8785 §3.2.3 asks
    return `{${entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => `${JSON.stringify(k)}:${jcs(v)}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

/** The row's hash: it covers every field but the hash itself, and the previous row's hash. */
export function rowHash(row: Omit<AuditRow, "hash">): string {
  const { prev, ...fields } = row;
  return createHash("sha256").update(prev).update(canonicalize(fields)).digest("hex");
}

export class AuditLog {
  readonly #db: DatabaseSync;
  readonly #file: string;
  readonly #now: () => number;
  readonly #insert: StatementSync | undefined;

  private constructor(db: DatabaseSync, file: string, now: () => number, readOnly: boolean) {
    this.#db = db;
    this.#file = file;
    this.#now = now;
    this.#insert = readOnly
      ? undefined
      : db.prepare("INSERT INTO audit (seq, at, jti, app, user, action, args_sha256, outcome, reason, result, prev, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  }

  /** Opens or creates the log, e.g. `<state>/commands/audit.db`; `readOnly` for kerf audit while the agent runs. */
  static open(file: string, options: { now?: () => number; readOnly?: boolean } = {}): AuditLog {
    const readOnly = options.readOnly ?? false;
    return new AuditLog(openStore(file, APPLICATION_ID, SCHEMA, readOnly), file, options.now ?? Date.now, readOnly);
  }

  /** Appends one event, durable when it returns. */
  append(event: AuditEvent): AuditRow {
    if (!this.#insert) throw storeError(this.#file, "appending", new Error("opened read-only"));
    const db = this.#db;
    try {
      db.exec("BEGIN IMMEDIATE");
      const head = this.#head();
      const text = (v: string | undefined) => (v === undefined ? null : v.slice(0, MAX_TEXT));
      const fields: Omit<AuditRow, "hash"> = {
        seq: head.seq + 1,
        at: new Date(this.#now()).toISOString(),
        jti: text(event.jti),
        app: text(event.app),
        user: text(event.user),
        action: text(event.action),
        argsSha256: event.args === undefined ? null : argsDigest(event.args),
        outcome: event.outcome,
        reason: text(event.reason),
        result: text(event.result),
        prev: head.hash,
      };
      const row: AuditRow = { ...fields, hash: rowHash(fields) };
      this.#insert.run(row.seq, row.at, row.jti, row.app, row.user, row.action, row.argsSha256, row.outcome, row.reason, row.result, row.prev, row.hash);
      const setMeta = db.prepare("UPDATE meta SET value = ? WHERE name = ?");
      setMeta.run(String(row.seq), "head_seq");
      setMeta.run(row.hash, "head_hash");
      db.exec("COMMIT");
      return row;
    } catch (err) {
      if (db.isOpen && db.isTransaction) db.exec("ROLLBACK");
      throw storeError(this.#file, "appending to the audit log", err);
    }
  }

  /** Rows after `afterSeq`, oldest first: for kerf audit, and for sending upstream. */
  rows(afterSeq = 0, limit = 1_000_000): AuditRow[] {
    try {
      return this.#db.prepare(`SELECT ${COLUMNS} FROM audit WHERE seq > ? ORDER BY seq LIMIT ?`).all(afterSeq, limit) as unknown as AuditRow[];
    } catch (err) {
      throw storeError(this.#file, "reading the audit log", err);
    }
  }

  /** The last seq the cloud acknowledged (POST /v1/audit); rows after it are still to send. */
  sentSeq(): number {
    const row = this.#db.prepare("SELECT value FROM meta WHERE name = 'sent_seq'").get() as { value: string } | undefined;
    return Number(row?.value ?? 0);
  }

  /** Records that the cloud has the rows up to `seq`. Never moves back. */
  markSent(seq: number): void {
    try {
      this.#db.prepare("UPDATE meta SET value = ? WHERE name = 'sent_seq' AND CAST(value AS INTEGER) < ?").run(String(seq), seq);
    } catch (err) {
      throw storeError(this.#file, "recording what the cloud has", err);
    }
  }

  /** Walks the chain from the first row; the first row that does not fit, and why. */
  verify(): Verification {
    let prev = GENESIS;
    let expected = 1;
    let rows = 0;
    try {
      for (const row of this.#db.prepare(`SELECT ${COLUMNS} FROM audit ORDER BY seq`).iterate() as Iterable<AuditRow>) {
        if (row.seq !== expected) return { ok: false, seq: expected, problem: `row ${expected} is missing (the next row is ${row.seq})` };
        if (row.prev !== prev) return { ok: false, seq: row.seq, problem: `row ${row.seq} does not follow the row before it (its prev hash differs): a row before it was changed, removed or moved` };
        const { hash, ...fields } = row;
        if (rowHash(fields) !== hash) return { ok: false, seq: row.seq, problem: `row ${row.seq} was changed after it was written (its hash does not match its content)` };
        prev = hash;
        expected++;
        rows++;
      }
      const head = this.#head();
      if (head.seq !== rows || head.hash !== prev) {
        return { ok: false, seq: rows + 1, problem: `the log ends at row ${rows}, but its head says row ${head.seq}: the newest rows were removed, or the head was changed` };
      }
      return { ok: true, rows, head: prev };
    } catch (err) {
      throw storeError(this.#file, "verifying the audit log", err);
    }
  }

  close(): void {
    if (this.#db.isOpen) this.#db.close();
  }

  #head(): { seq: number; hash: string } {
    const meta = new Map((this.#db.prepare("SELECT name, value FROM meta").all() as { name: string; value: string }[]).map((r) => [r.name, r.value]));
    return { seq: Number(meta.get("head_seq")), hash: meta.get("head_hash") ?? "" };
  }
}
