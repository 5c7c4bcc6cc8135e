import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { AuditLog } from "../../src/commands/audit.ts";
import { EnvelopeVerifier } from "../../src/commands/envelope.ts";
import { CommandGate } from "../../src/commands/gate.ts";
import { CommandPolicy } from "../../src/commands/policy.ts";
import { ReplayStore } from "../../src/commands/replay.ts";
import { createCommandSigner } from "../../src/devcloud/command-signer.ts";

// The devcloud's signer and the connector's gate, with real keys, real SQLite and the real clock.
const signer = createCommandSigner();
const other = createCommandSigner({ alg: "EdDSA" });
const policy = CommandPolicy.fromConfig(
  {
    keys: "unused",
    actions: ["status", "read", "write"],
    machines: Object.assign(Object.create(null) as Record<string, never>, { m1: { write: [{ node: "ns=2;s=Setpoint", type: "Double" }], call: [] } }),
    clockSkewSeconds: 30,
    maxLifetimeSeconds: 300,
  },
  ["m1"],
);

let dir: string;
let audit: AuditLog;
let replay: ReplayStore;
let gate: CommandGate;

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), "kerf-gate-"));
  audit = AuditLog.open(path.join(dir, "audit.db"));
  replay = ReplayStore.open(path.join(dir, "replay.db"));
  gate = new CommandGate({ verifier: new EnvelopeVerifier({ keys: signer.jwks, instance: "press-7" }), replay, policy: () => policy, audit });
});
afterEach(() => {
  audit.close();
  replay.close();
  rmSync(dir, { recursive: true, force: true });
});

const write = (value: number, node = "ns=2;s=Setpoint") => ({ connector: "press-7", clientId: "app-a", sub: "alice", scope: "machines:write", action: "write" as const, args: { machine: "m1", node, value } });

it("lets a signed, fresh, allowed command through once, audits it and its result; a replay is refused and audited", async () => {
  const { jti, envelope } = await signer.sign(write(12));
  const first = await gate.admit(envelope);
  expect(first).toMatchObject({ ok: true, command: { jti, action: "write", clientId: "app-a", sub: "alice" }, values: [{ type: "Double", value: 12 }] });
  if (first.ok) gate.finish(first.command, { state: "succeeded" });
  expect(await gate.admit(envelope)).toMatchObject({ ok: false, code: "replayed", jti });
  expect(audit.rows().map((r) => [r.jti, r.app, r.user, r.action, r.outcome, r.reason ?? r.result])).toEqual([
    [jti, "app-a", "alice", "write", "accepted", null],
    [jti, "app-a", "alice", "write", "result", "succeeded"],
    [jti, "app-a", "alice", "write", "refused", `replayed: command ${jti} was taken before`],
  ]);
  expect(audit.verify().ok).toBe(true);
});

it("refuses and audits a foreign-key envelope, one for another connector, and a write the policy does not allow", async () => {
  const foreign = await other.sign(write(1));
  expect(await gate.admit(foreign.envelope)).toMatchObject({ ok: false, code: "unknown_key" });
  const elsewhere = await signer.sign({ ...write(1), connector: "press-8" });
  expect(await gate.admit(elsewhere.envelope)).toMatchObject({ ok: false, code: "wrong_audience" });
  const notListed = await signer.sign(write(1, "ns=2;s=Other"));
  expect(await gate.admit(notListed.envelope)).toMatchObject({ ok: false, code: "node_not_writable" });
  // A command refused by the policy keeps its id: sending it again is a replay, not a second try.
  expect(await gate.admit(notListed.envelope)).toMatchObject({ ok: false, code: "replayed" });
  expect(audit.rows().map((r) => [r.jti, r.outcome, r.reason?.split(":")[0]])).toEqual([
    [foreign.jti, "refused", "unknown_key"],
    [elsewhere.jti, "refused", "wrong_audience"],
    [notListed.jti, "refused", "node_not_writable"],
    [notListed.jti, "refused", "replayed"],
  ]);
  // Unsigned junk does not reach the replay store.
  expect(replay.size).toBe(1);
});

it("refuses and audits an empty envelope (a malformed item of a poll answer)", async () => {
  expect(await gate.admit("")).toMatchObject({ ok: false, code: "malformed" });
  expect(audit.rows().map((r) => [r.outcome, r.reason?.split(":")[0]])).toEqual([["refused", "malformed"]]);
});

it("does not run a command it cannot audit", async () => {
  const { envelope } = await signer.sign(write(3));
  audit.close();
  await expect(gate.admit(envelope)).rejects.toMatchObject({ code: "COMMAND_STORE" });
});
