import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { DatabaseSync } from "node:sqlite";
import { afterEach, beforeEach, expect, it } from "vitest";
import { argsDigest, AuditLog, GENESIS, rowHash } from "../../src/commands/audit.ts";

let dir: string;
let file: string;

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), "kerf-audit-"));
  file = path.join(dir, "commands", "audit.db");
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** Four events, as the commands part writes them; the log closed again. */
function fill(): void {
  let t = Date.parse("2026-12-06T02:00:00Z");
  const log = AuditLog.open(file, { now: () => (t += 1000) });
  log.append({ jti: "c-1", app: "app-a", user: "alice", action: "read", args: { machine: "m1", nodes: ["ns=2;s=Speed"] }, outcome: "accepted" });
  log.append({ jti: "c-1", app: "app-a", user: "alice", action: "read", outcome: "result", result: "succeeded" });
  log.append({ jti: "c-2", app: "app-b", action: "write", args: { machine: "m1", node: "ns=2;s=Setpoint", value: 5 }, outcome: "refused", reason: "policy_denied: node ns=2;s=Setpoint is not writable" });
  log.append({ jti: "c-3", app: "app-a", action: "status", args: {}, outcome: "accepted" });
  log.close();
}

/** The file as an intruder with the sqlite3 tool sees it: triggers dropped, then plain SQL. */
function tamper(sql: string): void {
  const db = new DatabaseSync(file);
  db.exec("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;");
  db.exec(sql);
  db.close();
}

function verify() {
  const log = AuditLog.open(file, { readOnly: true });
  try {
    return log.verify();
  } finally {
    log.close();
  }
}

it("records time, app, user, action, the arguments' digest, outcome, reason and result, each row chained to the one before", () => {
  fill();
  const log = AuditLog.open(file, { readOnly: true });
  const rows = log.rows();
  log.close();
  expect(rows.map((r) => [r.seq, r.at, r.app, r.user, r.action, r.outcome, r.reason, r.result])).toEqual([
    [1, "2026-12-06T02:00:01.000Z", "app-a", "alice", "read", "accepted", null, null],
    [2, "2026-12-06T02:00:02.000Z", "app-a", "alice", "read", "result", null, "succeeded"],
    [3, "2026-12-06T02:00:03.000Z", "app-b", null, "write", "refused", "policy_denied: node ns=2;s=Setpoint is not writable", null],
    [4, "2026-12-06T02:00:04.000Z", "app-a", null, "status", "accepted", null, null],
  ]);
  // The digest does not depend on key order, and differs for other arguments.
  expect(rows[0]!.argsSha256).toBe(argsDigest({ nodes: ["ns=2;s=Speed"], machine: "m1" }));
  expect(rows[0]!.argsSha256).not.toBe(argsDigest({ machine: "m1", nodes: ["ns=2;s=Sped"] }));
  expect(rows[0]!.prev).toBe(GENESIS);
  expect(rows.slice(1).map((r) => r.prev)).toEqual(rows.slice(0, -1).map((r) => r.hash));
  expect(verify()).toEqual({ ok: true, rows: 4, head: rows[3]!.hash });
});

it("keeps the chain across a reopen: new rows follow the old ones", () => {
  fill();
  fill();
  expect(verify()).toMatchObject({ ok: true, rows: 8 });
});

it("remembers which rows the cloud has, across a reopen, and never moves that mark back", () => {
  fill();
  const log = AuditLog.open(file);
  expect(log.sentSeq()).toBe(0);
  log.markSent(3);
  log.markSent(2);
  log.close();
  const again = AuditLog.open(file);
  expect(again.sentSeq()).toBe(3);
  expect(again.rows(again.sentSeq()).map((r) => r.seq)).toEqual([4]);
  again.close();
  expect(verify().ok).toBe(true);
});

it("refuses UPDATE and DELETE through SQL while its triggers are in place", () => {
  fill();
  const db = new DatabaseSync(file);
  expect(() => db.exec("UPDATE audit SET outcome = 'accepted' WHERE seq = 3")).toThrow(/append-only/);
  expect(() => db.exec("DELETE FROM audit WHERE seq = 3")).toThrow(/append-only/);
  db.close();
  expect(verify().ok).toBe(true);
});

it("finds a row edited with a plain UPDATE: the refusal turned into an acceptance", () => {
  fill();
  tamper("UPDATE audit SET outcome = 'accepted', reason = NULL WHERE seq = 3");
  expect(verify()).toMatchObject({ ok: false, seq: 3, problem: expect.stringMatching(/changed after it was written/) });
});

it("finds an edit that also recomputed the row's own hash, at the next row", () => {
  fill();
  const log = AuditLog.open(file, { readOnly: true });
  const row = log.rows(2, 1)[0]!;
  log.close();
  const { hash: _, ...fields } = { ...row, app: "app-a" };
  const forged = rowHash(fields);
  tamper(`UPDATE audit SET app = 'app-a', hash = '${forged}' WHERE seq = 3`);
  expect(verify()).toMatchObject({ ok: false, seq: 4, problem: expect.stringMatching(/does not follow/) });
});

it("finds a deleted row, and deleted newest rows", () => {
  fill();
  tamper("DELETE FROM audit WHERE seq = 2");
  expect(verify()).toMatchObject({ ok: false, seq: 2, problem: expect.stringMatching(/missing/) });
  rmSync(path.dirname(file), { recursive: true });
  fill();
  tamper("DELETE FROM audit WHERE seq >= 3");
  expect(verify()).toMatchObject({ ok: false, seq: 3, problem: expect.stringMatching(/newest rows were removed/) });
});

it("finds rows reordered (two rows' contents swapped, seq kept)", () => {
  fill();
  tamper(`
    CREATE TEMP TABLE t AS SELECT * FROM audit WHERE seq IN (2, 3);
    UPDATE audit SET at = (SELECT at FROM t WHERE seq = 3), jti = (SELECT jti FROM t WHERE seq = 3), app = (SELECT app FROM t WHERE seq = 3),
      user = (SELECT user FROM t WHERE seq = 3), action = (SELECT action FROM t WHERE seq = 3), args_sha256 = (SELECT args_sha256 FROM t WHERE seq = 3),
      outcome = (SELECT outcome FROM t WHERE seq = 3), reason = (SELECT reason FROM t WHERE seq = 3), result = (SELECT result FROM t WHERE seq = 3),
      hash = (SELECT hash FROM t WHERE seq = 3), prev = (SELECT prev FROM t WHERE seq = 3) WHERE seq = 2;
  `);
  expect(verify()).toMatchObject({ ok: false, seq: 2 });
});

it("audits a command whose arguments hold a fractional number (a written setpoint)", () => {
  const log = AuditLog.open(file);
  const row = log.append({ jti: "w", action: "write", args: { machine: "m1", node: "ns=2;s=Set", value: 23.5 }, outcome: "accepted" });
  log.close();
  expect(row.argsSha256).toBe(argsDigest({ value: 23.5, node: "ns=2;s=Set", machine: "m1" }));
  expect(row.argsSha256).not.toBe(argsDigest({ value: 23.25, node: "ns=2;s=Set", machine: "m1" }));
});
