import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { DatabaseSync } from "node:sqlite";
import { afterEach, beforeEach, expect, it } from "vitest";
import { AuditLog, auditFile } from "../../src/commands/audit.ts";
import { kerf } from "./helpers.ts";

let stateDir: string;
beforeEach(() => {
  stateDir = mkdtempSync(path.join(tmpdir(), "kerf-audit-cli-"));
});
afterEach(() => rmSync(stateDir, { recursive: true, force: true }));

function fill(): void {
  const log = AuditLog.open(auditFile(stateDir), { now: () => Date.parse("2026-12-06T02:00:00Z") });
  log.append({ jti: "c-1", app: "app-a", user: "alice", action: "read", args: { machine: "m1", nodes: ["i=2258"] }, outcome: "accepted" });
  log.append({ jti: "c-1", app: "app-a", user: "alice", action: "read", outcome: "result", result: "succeeded" });
  // What a forged envelope claimed is kept as it was, and must not reach the terminal raw.
  log.append({ jti: "c-2", app: "evil\u001b[2J", action: "write", outcome: "refused", reason: "bad_signature: the signature does not verify" });
  log.close();
}

it("prints every row, and with --verify says the chain is intact (exit 0)", async () => {
  fill();
  const r = await kerf(["audit", "--state-dir", stateDir, "--verify"]);
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  const lines = r.stdout.trimEnd().split("\n");
  expect(lines).toHaveLength(4);
  expect(lines[0]).toMatch(/^1 2026-12-06T02:00:00.000Z read app=app-a user=alice jti=c-1 args=sha256:[0-9a-f]{12} accepted$/);
  expect(lines[1]).toMatch(/^2 .* read app=app-a user=alice jti=c-1 result succeeded$/);
  expect(lines[2]).toContain('app="evil\\u001b[2J"');
  expect(r.stdout).not.toContain("\u001b");
  expect(lines[3]).toMatch(/^chain intact: 3 rows, head [0-9a-f]{16}…$/);
});

it("with --verify names the first tampered row and exits 1; --json carries the same", async () => {
  fill();
  const db = new DatabaseSync(auditFile(stateDir));
  db.exec("DROP TRIGGER audit_no_update; UPDATE audit SET outcome = 'accepted', reason = NULL WHERE seq = 3");
  db.close();
  const text = await kerf(["audit", "--state-dir", stateDir, "--verify"]);
  expect(text.code).toBe(1);
  expect(text.stdout).toMatch(/\nTAMPERED at row 3: row 3 was changed after it was written/);
  const json = await kerf(["audit", "--state-dir", stateDir, "--verify", "--json", "--last", "1"]);
  expect(json.code).toBe(1);
  const out = JSON.parse(json.stdout) as { rows: { seq: number }[]; verified: { ok: boolean; seq: number } };
  expect(out.rows.map((row) => row.seq)).toEqual([3]);
  expect(out.verified).toMatchObject({ ok: false, seq: 3 });
});

it("without a log says that no command has arrived, and exits 0", async () => {
  const r = await kerf(["audit", "--state-dir", stateDir]);
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/^no audit log at .*audit\.db: no remote command has been received\n$/);
});
