import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import path from "node:path";
import { DatabaseSync } from "node:sqlite";
import { stringify } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuditLog, auditFile } from "../../src/commands/audit.ts";
import { createCommandSigner } from "../../src/devcloud/command-signer.ts";
import { addServiceApp, SERVICE_APP, setGrant, USER_APP } from "../../src/devcloud/grants.ts";
import { DEMO_INSTANCE } from "../../src/demo/setup.ts";
import { SIM_NODES, simulatorMapping } from "../../src/simulator/nodes.ts";
import { DEMO_MACHINE, startEnvironment, tempDir, waitFor } from "../helpers/env.ts";
import { editConfig } from "../e2e/connector.ts";
import { bundleTargetName, packBundle } from "../../src/release/bundle.ts";
import { publishBundle } from "../../src/release/publish.ts";
import { initRepo, metadataDir } from "../../src/release/repo.ts";
import { listeningSockets } from "../helpers/listening.ts";
import { partnerClient } from "../helpers/partner.ts";

// Remote commands end to end (issue 16, security-tests.md "Remote commands"): a partner app
// through the devcloud's partner API, the devcloud's signed envelopes, the connector's gate and
// local policy, the simulator. One environment for the file.
let env: Awaited<ReturnType<typeof startEnvironment>>;
let releaseDir: Awaited<ReturnType<typeof tempDir>> | undefined;
let partner: ReturnType<typeof partnerClient>;
let token: string;

// A signed repository for update.check: the connector's update part checks it on command.
let repo: { repoDir: string; keysDir: string };

beforeAll(async () => {
  const releases = await tempDir();
  releaseDir = releases;
  repo = { repoDir: path.join(releases.dir, "repo"), keysDir: path.join(releases.dir, "keys") };
  initRepo(repo);
  env = await startEnvironment({
    commands: true,
    editConfig: (file) =>
      editConfig(file, (c) => {
        // A day between checks: within this test only the command checks.
        c.update = { trustedRoot: path.join(metadataDir(repo.repoDir), "1.root.json"), checkIntervalSeconds: 86_400 };
      }),
  });
  env.demo.devcloud.tuf.dir = repo.repoDir;
  partner = partnerClient(env.demo.devcloud);
  token = await partner.token(SERVICE_APP, "machines:read machines:write connector:manage connector:diagnostics");
  await waitFor("the machine session", () => env.agent.sessions[0]?.state === "connected");
  await waitFor("the first command poll", () => env.demo.devcloud.commands.seen(DEMO_INSTANCE).lastPollAt !== null);
}, 60_000);

afterAll(async () => {
  await partner?.close();
  await env?.stop();
  await releaseDir?.cleanup();
});

/** Sends through the partner API and waits for a final state. */
async function run(action: string, args: unknown, t = token) {
  const sent = await partner.call(t, "POST", `/connectors/${DEMO_INSTANCE}/commands`, { action, args });
  expect(sent.status, JSON.stringify(sent.body)).toBe(202);
  return finalState(String(sent.body.jti), t);
}

async function finalState(jti: string, t = token) {
  return waitFor(`command ${jti}`, async () => {
    const r = await partner.call(t, "GET", `/commands/${jti}`);
    return ["queued", "delivered", "running"].includes(String(r.body.state)) ? false : (r.body as { jti: string; state: string; result?: { state: string; code?: string; reason?: string; data?: unknown } });
  });
}

/** An envelope put straight into the connector's queue: the cloud's checks bypassed. */
async function inject(envelope: string, jti: string) {
  env.demo.devcloud.commands.enqueue({ jti, connector: DEMO_INSTANCE, clientId: "attacker", action: "write", envelope, deadline: new Date(Date.now() + 60_000).toISOString(), exp: Math.floor(Date.now() / 1000) + 60 });
  const record = await waitFor(`injected ${jti}`, () => {
    const r = env.demo.devcloud.commands.get(jti);
    return r && !["queued", "delivered", "running"].includes(r.state) && r;
  });
  return record;
}

function auditRows() {
  const log = AuditLog.open(auditFile(env.demo.connectorStateDir), { readOnly: true });
  try {
    return log.rows();
  } finally {
    log.close();
  }
}

let lateJti = "";
const writeArgs = (node: string, value: unknown) => ({ machine: DEMO_MACHINE, node, value });

describe("refused at the cloud", () => {
  it("answers 401 without a token, 403 no_grant to an app without a grant, 403 insufficient_scope to a token without the scope", async () => {
    const before = env.demo.devcloud.commands.seen(DEMO_INSTANCE);
    expect((await partner.call(null, "POST", `/connectors/${DEMO_INSTANCE}/commands`, { action: "status" })).status).toBe(401);

    const secret = addServiceApp(env.demo.devcloud.dir, "partner-nogrant");
    const noGrant = await partner.token("partner-nogrant", "machines:read machines:write", secret);
    const refused = await partner.call(noGrant, "POST", `/connectors/${DEMO_INSTANCE}/commands`, { action: "itemWrite", args: writeArgs(SIM_NODES.feedSetpoint, 5) });
    expect(refused.status).toBe(403);
    expect(refused.body.error).toBe("no_grant");
    expect((await partner.call(noGrant, "GET", `/connectors/${DEMO_INSTANCE}/machines/${DEMO_MACHINE}/latest`)).body.error).toBe("no_grant");
    expect((await partner.call(noGrant, "GET", "/connectors")).body.connectors).toEqual([]);

    // granted read only: a write is refused at the cloud even with a token that has machines:write
    setGrant(env.demo.devcloud.dir, "partner-nogrant", DEMO_INSTANCE, ["machines:read"]);
    expect((await partner.call(noGrant, "POST", `/connectors/${DEMO_INSTANCE}/commands`, { action: "write", args: writeArgs(SIM_NODES.feedSetpoint, 5) })).body.error).toBe("no_grant");

    const readOnly = await partner.token(SERVICE_APP, "machines:read");
    const narrow = await partner.call(readOnly, "POST", `/connectors/${DEMO_INSTANCE}/commands`, { action: "write", args: writeArgs(SIM_NODES.feedSetpoint, 5) });
    expect(narrow.status).toBe(403);
    expect(narrow.body.error).toBe("insufficient_scope");
    expect(env.demo.devcloud.partner.refusals).toMatchObject({ no_grant: 3, insufficient_scope: 1 });
    expect(env.demo.devcloud.commands.seen(DEMO_INSTANCE)).toBeDefined();
    expect(before).toBeDefined();
  });
});

describe("through the cloud", () => {
  it("lists the connector online and reads the latest values", async () => {
    const list = await partner.call(token, "GET", "/connectors");
    expect(list.body.connectors).toEqual([expect.objectContaining({ id: DEMO_INSTANCE, online: true })]);
    const latest = await waitFor("latest values", async () => {
      const r = await partner.call(token, "GET", `/connectors/${DEMO_INSTANCE}/machines/${DEMO_MACHINE}/latest`);
      return r.status === 200 && Object.keys(r.body.values as object).includes("feed.rate") && r;
    });
    expect(latest.status).toBe(200);
    // a grant on another connector does not reach this connector's machine by naming it
    setGrant(env.demo.devcloud.dir, SERVICE_APP, "kerf-other", ["machines:read"]);
    expect((await partner.call(token, "GET", `/connectors/kerf-other/machines/${DEMO_MACHINE}/latest`)).status).toBe(404);
    setGrant(env.demo.devcloud.dir, SERVICE_APP, "kerf-other", []);
    // the demo's policy fits the simulator: the check at connect finds nothing
    expect(env.agent.health().warnings.filter((w) => w.code === "COMMAND_POLICY")).toEqual([]);
  });

  it("takes a command from a user app (authorization code + PKCE) and audits the user", async () => {
    setGrant(env.demo.devcloud.dir, USER_APP, DEMO_INSTANCE, ["machines:read"]);
    const alice = await partner.userToken("alice", "machines:read");
    const done = await run("status", {}, alice);
    expect(done.state).toBe("succeeded");
    expect(auditRows().filter((r) => r.app === USER_APP).map((r) => [r.user, r.outcome])).toEqual([
      ["alice", "accepted"],
      ["alice", "result"],
    ]);
    // only the app and user that sent a command see it
    expect((await partner.call(token, "GET", `/commands/${done.jti}`)).status).toBe(404);
  });

  it("writes an allowed node: the value changes on the simulator", async () => {
    const done = await run("itemWrite", writeArgs(SIM_NODES.feedSetpoint, 23.5));
    expect(done.state, JSON.stringify(done)).toBe("succeeded");
    expect(env.demo.simulator.valueOf(SIM_NODES.feedSetpoint)).toBe(23.5);
    const read = await run("itemRead", { machine: DEMO_MACHINE, nodes: [SIM_NODES.feedSetpoint] });
    expect(read.result?.data).toEqual([expect.objectContaining({ value: 23.5, status: "Good" })]);
  });

  it("a result the cloud refused at first arrives after the next poll", async () => {
    // the three tries of "running" and the three of the final result fail
    env.demo.devcloud.faults.failCommandResults = 6;
    const done = await run("itemRead", { machine: DEMO_MACHINE, nodes: [SIM_NODES.feedSetpoint] });
    expect(done.state).toBe("succeeded");
    expect(env.demo.devcloud.faults.failCommandResults).toBe(0);
  });

  it("calls an allowed method", async () => {
    const done = await run("method", { machine: DEMO_MACHINE, object: SIM_NODES.vendorObject, method: SIM_NODES.acknowledge, inputs: ["shift change"] });
    expect(done.state, JSON.stringify(done)).toBe("succeeded");
    expect(done.result?.data).toEqual({ outputs: [1] });
  });

  it("refuses a write to a node the local policy does not list, and audits it, here and upstream", async () => {
    const before = env.demo.simulator.valueOf(SIM_NODES.feedRate);
    const done = await run("write", writeArgs(SIM_NODES.feedRate, 1));
    expect(done.state).toBe("refused");
    expect(done.result?.code).toBe("node_not_writable");
    expect(env.demo.simulator.valueOf(SIM_NODES.feedRate)).not.toBe(1);
    expect(typeof before).toBe("number");
    const row = auditRows().find((r) => r.outcome === "refused" && r.reason?.startsWith("node_not_writable"));
    expect(row).toMatchObject({ app: SERVICE_APP, action: "write" });
    await waitFor("the audit rows upstream", () => env.demo.devcloud.commands.audit.get(DEMO_INSTANCE)?.rows.some((r) => r.seq === row!.seq));
    expect(env.demo.devcloud.commands.audit.get(DEMO_INSTANCE)?.alarms).toEqual([]);
  });

  it("refuses a bad mapping.set; the old mapping keeps streaming; a good one is applied", async () => {
    const bad = await run("mapping.set", { mapping: "machines:\n  demo-saw:\n    groups:\n      - name: process\n        nodes: [{ key: spindle.speed, node: 'not a node id' }]\n" });
    expect(bad.state).toBe("bad_request");
    expect(bad.result?.code).toBe("mapping_invalid");
    expect(bad.result?.reason).toMatch(/mapping from command .*:\d+:\d+/);
    const count = () => env.demo.devcloud.store.items(DEMO_MACHINE, "spindle.speed").length;
    const n = count();
    await waitFor("spindle.speed still streaming", () => count() > n + 2);

    const map = simulatorMapping(DEMO_MACHINE);
    const good = stringify({ machines: { [DEMO_MACHINE]: { groups: [{ name: "process", publishingInterval: 250, nodes: [...map.points.map((p) => ({ key: p.key, node: p.node })), { key: "feed.setpoint", node: SIM_NODES.feedSetpoint }] }] } } });
    const applied = await run("mapping.set", { mapping: good });
    expect(applied.state, JSON.stringify(applied)).toBe("succeeded");
    await waitFor("feed.setpoint streaming", () => env.demo.devcloud.store.items(DEMO_MACHINE, "feed.setpoint").length > 0);
    expect(readFileSync(env.loaded.mappingFile, "utf8")).toBe(good);
  });
});

describe("refused at the connector when the cloud is bypassed", () => {
  const signer = () => env.demo.devcloud.commandSigner;
  const base = { connector: DEMO_INSTANCE, clientId: SERVICE_APP, scope: "machines:write", action: "write" as const, args: writeArgs(SIM_NODES.feedSetpoint, 7) };

  it("a tampered envelope, a foreign key, another connector, an expired one, a scope that does not allow the action", async () => {
    const good = await signer().sign(base);
    const [h, p, s] = good.envelope.split(".");
    const claims = JSON.parse(Buffer.from(p!, "base64url").toString());
    const tampered = `${h}.${Buffer.from(JSON.stringify({ ...claims, args: { ...claims.args, value: 55 } })).toString("base64url")}.${s}`;
    expect((await inject(tampered, `${good.jti}`)).result?.code).toBe("bad_signature");

    const foreign = await createCommandSigner().sign(base);
    expect((await inject(foreign.envelope, foreign.jti)).result?.code).toBe("unknown_key");
    const other = await signer().sign({ ...base, connector: "kerf-other" });
    expect((await inject(other.envelope, other.jti)).result?.code).toBe("wrong_audience");
    const expiredSigner = createCommandSigner({ privateKeyPem: readFileSync(path.join(env.demo.devcloud.dir, "command-key.pem"), "utf8"), now: () => Date.now() - 600_000 });
    const expired = await expiredSigner.sign(base);
    expect((await inject(expired.envelope, expired.jti)).result?.code).toBe("expired");
    const scope = await signer().sign({ ...base, scope: "machines:read" });
    expect((await inject(scope.envelope, scope.jti)).result?.code).toBe("scope_denied");
    expect(env.demo.simulator.valueOf(SIM_NODES.feedSetpoint)).not.toBe(55);
    expect(env.demo.simulator.valueOf(SIM_NODES.feedSetpoint)).not.toBe(7);
    for (const code of ["bad_signature", "unknown_key", "wrong_audience", "expired", "scope_denied"]) {
      expect(auditRows().some((r) => r.outcome === "refused" && r.reason?.startsWith(`${code}:`)), code).toBe(true);
    }
  });

  it("a replayed command runs once", async () => {
    const once_ = await signer().sign({ ...base, args: writeArgs(SIM_NODES.feedSetpoint, 31) });
    expect((await inject(once_.envelope, once_.jti)).state).toBe("succeeded");
    expect(env.demo.simulator.valueOf(SIM_NODES.feedSetpoint)).toBe(31);
    const again = await inject(once_.envelope, `${once_.jti}-again`);
    expect(again.result?.code).toBe("replayed");
  });
});

describe("management actions", () => {
  it("diagnostics: versions, the config without secret content, health with the commands section", async () => {
    const done = await run("diagnostics", { logLines: 50 });
    expect(done.state).toBe("succeeded");
    const data = done.result?.data as { versions: { kerf: string }; config: { instance: string }; health: { commands: { accepted: number } }; logs: string[] };
    expect(data.versions.kerf).toMatch(/^\d+\.\d+\.\d+/);
    expect(data.config.instance).toBe(DEMO_INSTANCE);
    expect(data.health.commands.accepted).toBeGreaterThan(0);
    const text = JSON.stringify(data);
    const bootstrap = readFileSync(path.join(path.dirname(env.demo.configFile), "bootstrap.token"), "utf8").trim();
    for (const secret of [bootstrap, "PRIVATE KEY", token.split(".")[2]!]) expect(text).not.toContain(secret);
    // and the health report on disk says how commands go
    const health = JSON.parse(readFileSync(path.join(env.demo.connectorStateDir, "health.json"), "utf8")) as { commands?: { accepted: number; polling: { lastPollAt: number } } };
    expect(health.commands?.accepted).toBeGreaterThan(0);
    expect(health.commands?.polling.lastPollAt).toBeGreaterThan(0);
  });

  it("identity.renew: a new instance certificate over EST, and commands still arrive over it", async () => {
    const before = env.agent.renewal!.renewals;
    const done = await run("identity.renew", {});
    expect(done.state, JSON.stringify(done)).toBe("succeeded");
    expect(env.agent.renewal!.renewals).toBe(before + 1);
    expect((await run("status", {})).state).toBe("succeeded");
  });
});

describe("update.check", () => {
  it("runs one check of the signed channel now: a release published meanwhile is found and downloaded", async () => {
    const running = (JSON.parse(readFileSync(path.resolve(import.meta.dirname, "../../package.json"), "utf8")) as { version: string }).version;
    const [major, minor] = running.split(".").map(Number);
    const next = `${major}.${minor! + 1}.0`;
    const updateToken = await partner.token(SERVICE_APP, "connector:update");
    const before = await run("update.check", {}, updateToken);
    expect(before.result, JSON.stringify(before)).toMatchObject({ state: "succeeded", data: { outcome: "up-to-date", version: running } });
    const bundle = path.join(releaseDir!.dir, bundleTargetName(next));
    await packBundle({ sourceDir: path.resolve(import.meta.dirname, "../.."), out: bundle, version: next });
    await publishBundle({ ...repo, bundle });
    const after = await run("update.check", {}, updateToken);
    expect(after.result, JSON.stringify(after)).toMatchObject({ state: "succeeded", data: { outcome: "available", version: next } });
  });
});

describe("the audit log", () => {
  it("shows an edit: the chain no longer verifies", async () => {
    const before = AuditLog.open(auditFile(env.demo.connectorStateDir), { readOnly: true });
    expect(before.verify().ok).toBe(true);
    before.close();
    // whoever can write the file can drop the trigger; the chain still shows the change
    const db = new DatabaseSync(auditFile(env.demo.connectorStateDir));
    db.exec("DROP TRIGGER audit_no_update");
    db.prepare("UPDATE audit SET outcome = 'accepted', reason = NULL WHERE reason LIKE 'node_not_writable%'").run();
    db.close();
    const after = AuditLog.open(auditFile(env.demo.connectorStateDir), { readOnly: true });
    const verdict = after.verify();
    after.close();
    expect(verdict.ok).toBe(false);
  });
});

describe("no inbound port", () => {
  it("a command the connector did not take by its deadline times out at the cloud and never runs late", async () => {
    await env.agent.stop();
    const sent = await partner.call(token, "POST", `/connectors/${DEMO_INSTANCE}/commands`, { action: "write", args: writeArgs(SIM_NODES.feedSetpoint, 44), timeoutSeconds: 1 });
    expect(sent.status).toBe(202);
    expect((await finalState(String(sent.body.jti))).state).toBe("timed_out");
    lateJti = String(sent.body.jti);
  });

  it("a running kerf run listens on no TCP socket and still takes a command", async () => {
    const child = spawn(process.execPath, ["bin/kerf.js", "run", "--config", env.demo.configFile, "--state-dir", env.demo.connectorStateDir], { cwd: path.resolve(import.meta.dirname, "../.."), stdio: "ignore" });
    try {
      const polled = env.demo.devcloud.commands.seen(DEMO_INSTANCE).lastPollAt ?? 0;
      await waitFor("the child's command poll", () => (env.demo.devcloud.commands.seen(DEMO_INSTANCE).lastPollAt ?? 0) > polled, 30_000);
      expect(listeningSockets(child.pid!)).toEqual([]);
      const done = await run("status", {});
      expect(done.state).toBe("succeeded");
      expect(listeningSockets(child.pid!)).toEqual([]);
      // the timed-out command never reached it
      expect(auditRows().some((r) => r.jti === lateJti)).toBe(false);
      expect(env.demo.simulator.valueOf(SIM_NODES.feedSetpoint)).not.toBe(44);
      // restart: the result first, then the process ends (its supervisor starts it again)
      const restart = await run("restart", {});
      expect(restart.state).toBe("succeeded");
      const [code] = (await once(child, "exit")) as [number | null];
      expect(code).toBe(0);
    } finally {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        await once(child, "close");
      }
    }
  }, 60_000);
});
