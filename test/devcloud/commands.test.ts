import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { AuditLog } from "../../src/commands/audit.ts";
import { CommandHub } from "../../src/devcloud/commands.ts";
import { silentLogger } from "../../src/log.ts";

// The cloud's copy of a connector's audit log (POST /v1/audit): it recomputes the chain, so an
// edit made before the rows were sent shows there too (issue 16: the copy upstream anchors the log).
let dir: string;
let log: AuditLog;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), "kerf-hub-"));
  log = AuditLog.open(path.join(dir, "audit.db"));
  for (let i = 1; i <= 8; i++) log.append({ jti: `c${i}`, app: "app", action: "status", outcome: "accepted" });
});
afterEach(() => {
  log.close();
  rmSync(dir, { recursive: true, force: true });
});

it("takes rows that chain on, and raises an alarm for a changed, missing or unlinked row", () => {
  const hub = new CommandHub(silentLogger());
  const rows = log.rows();
  expect(hub.receiveAudit("c", { rows: rows.slice(0, 3) })).toMatchObject({ status: 200, body: { head: { seq: 3 } } });
  // sent again after a lost answer: nothing new, no alarm
  expect(hub.receiveAudit("c", { rows: rows.slice(0, 3) }).status).toBe(200);
  const edited = { ...rows[3]!, outcome: "refused" };
  expect(hub.receiveAudit("c", { rows: [edited] })).toMatchObject({ status: 409, body: { error: "audit_chain_broken" } });
  expect(hub.receiveAudit("c", { rows: rows.slice(4, 5) }).status).toBe(409);
  expect(hub.audit.get("c")?.alarms).toEqual([expect.stringMatching(/row 4 does not match its hash/), expect.stringMatching(/row 4 is missing/)]);
  expect(hub.receiveAudit("c", { rows: rows.slice(3) })).toMatchObject({ status: 200, body: { head: { seq: 8 } } });
});

it("after a cloud restart (no head kept) starts the chain at the first rows it gets, then checks on", () => {
  const hub = new CommandHub(silentLogger());
  const rows = log.rows();
  expect(hub.receiveAudit("c", { rows: rows.slice(5, 7) })).toMatchObject({ status: 200, body: { head: { seq: 7 } } });
  expect(hub.receiveAudit("c", { rows: [{ ...rows[7]!, prev: rows[5]!.hash }] }).status).toBe(409);
});

it("reads a replayed refusal of a redelivered command as 'taken, outcome unknown', until the real result comes", () => {
  const hub = new CommandHub(silentLogger());
  const record = hub.enqueue({ jti: "j1", connector: "c", clientId: "app", action: "status", envelope: "x", deadline: new Date(Date.now() + 60_000).toISOString(), exp: Math.floor(Date.now() / 1000) + 60 });
  // as after a poll answer that was lost: handed out twice
  Object.assign(record, { state: "delivered", redelivered: true });
  expect(hub.result("c", "j1", { state: "refused", code: "replayed", reason: "command j1 was taken before" }).status).toBe(204);
  expect(hub.get("j1")).toMatchObject({ state: "failed", result: { code: "outcome_unknown" } });
  expect(hub.result("other", "j1", { state: "succeeded" }).status).toBe(404);
  hub.result("c", "j1", { state: "succeeded", data: { ok: true } });
  expect(hub.get("j1")).toMatchObject({ state: "succeeded", result: { data: { ok: true } } });
  // a final state stays final
  hub.result("c", "j1", { state: "failed" });
  expect(hub.get("j1")?.state).toBe("succeeded");
});
