/**
 * Structures of the server's own types: one with fields named `__proto__`, `constructor` and
 * `prototype` (node-opcua refuses the type), one whose type the server never describes (its
 * Reads are never answered). Neither may hold up the values beside it, nor end the process.
 */
import { spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Writable } from "node:stream";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { DevCaEnroller, ensureIdentity } from "../../src/certs/identity.ts";
import { startDevCloud } from "../../src/devcloud/index.ts";
import { silentLogger } from "../../src/log.ts";
import { BAD_DATA_ENCODING_INVALID } from "../../src/opcua/subscription/encode.ts";
import { routeOpcuaLogging } from "../../src/opcua/logging.ts";
import { openClientPki } from "../../src/opcua/trust/pki.ts";
import { MachineSession } from "../../src/opcua/session/session.ts";
import type { NodeSpec } from "../../src/opcua/types.ts";
import { loadNodeId, ROGUE_DECODING_NODES } from "../../src/simulator/nodes.ts";
import { startSimulator } from "../../src/simulator/server.ts";
import type { Item } from "../../src/message.ts";
import { checkSeries, loadKey, tempDir, waitFor } from "../helpers/env.ts";
import { endpointSpec, simulatorAndPki } from "../helpers/opcua.ts";

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

const repo = path.resolve(import.meta.dirname, "../..");
const COUNTERS = 8;
/** A group of ten: the two structures and eight counters. */
const GROUP = [
  { key: "proto", node: ROGUE_DECODING_NODES.protoFields },
  { key: "hanging", node: ROGUE_DECODING_NODES.hangingType },
  ...Array.from({ length: COUNTERS }, (_, i) => ({ key: loadKey(i), node: loadNodeId(i) })),
];
const STUCK = /has not described this structure's type within the wait/;

describe("a group with an undecodable structure", () => {
  it("delivers the others: the structures arrive as null with BadDataEncodingInvalid, the stuck one is logged by key", { timeout: 90_000 }, async () => {
    const tmp = await tempDir("kerf-structures-");
    cleanups.push(tmp.cleanup);
    const { sim, pki } = await simulatorAndPki(tmp.dir, cleanups, { rogue: { periodMs: 200 }, load: { count: COUNTERS, periodMs: 100 } });
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: "info" }, new Writable({ write: (chunk, _e, cb) => (lines.push(JSON.parse(String(chunk)) as Record<string, unknown>), cb()) }));
    routeOpcuaLogging(logger);
    cleanups.push(async () => routeOpcuaLogging(silentLogger()));
    const items: Item[] = [];
    const nodes: NodeSpec[] = GROUP.map((g) => ({ ...g, samplingInterval: 0, queueSize: 100, discardOldest: true }));
    const spec = endpointSpec(sim, { groups: [{ name: "ten", publishingInterval: 100, nodes }] });
    const session = new MachineSession({ spec, pki, logger, sink: { write: (ms) => ms.forEach((m) => m.kind === "data" && items.push(...m.items)) } });
    cleanups.push(() => session.stop());
    session.start();
    const of = (key: string) => items.filter((i) => i.key === key);

    // node-opcua asks the server about the hanging type and waits for its own timeout (15 s, twice)
    await waitFor("the stuck structure reported by key", () => lines.some((l) => l.point === "hanging" && STUCK.test(String(l.msg))), 30_000);
    await waitFor("30 more values of each counter", () => GROUP.slice(2).every((g) => of(g.key).length >= 30), 30_000);
    await waitFor("values of the hanging structure after the first", () => of("hanging").length >= 5, 30_000);

    expect(lines.find((l) => l.point === "hanging" && STUCK.test(String(l.msg)))).toMatchObject({ group: "ten", waitedMs: 5000 });
    for (const key of ["proto", "hanging"]) {
      expect(of(key).length, key).toBeGreaterThan(0);
      for (const item of of(key)) expect(item, key).toMatchObject({ v: null, q: BAD_DATA_ENCODING_INVALID });
      // encode.ts names the point and the type it could not decode
      expect(lines.some((l) => l.point === key && /could not be decoded/.test(String(l.reason)))).toBe(true);
    }
    for (const g of GROUP.slice(2)) expect(checkSeries(of(g.key) as never).gaps, g.key).toEqual([]);
    expect(session.health().connects).toBe(1);
  });
});

describe("kerf run against a server that never describes a structure's type", () => {
  it("stays up, logs the stuck structure by key, delivers the rest, and stops cleanly in the middle of it", { timeout: 120_000 }, async () => {
    const tmp = await tempDir("kerf-structures-run-");
    cleanups.push(tmp.cleanup);
    const cloud = await startDevCloud({ dir: path.join(tmp.dir, "cloud"), logger: silentLogger() });
    cleanups.push(() => cloud.stop());
    const sim = await startSimulator({ pkiDir: path.join(tmp.dir, "sim"), logger: silentLogger(), rogue: { periodMs: 200 }, load: { count: COUNTERS, periodMs: 100 } });
    cleanups.push(() => sim.stop());
    const stateDir = path.join(tmp.dir, "state");
    const pki = await openClientPki({ dir: path.join(stateDir, "pki"), instance: "kerf-rogue", logger: silentLogger() });
    await pki.certificateManager.trustCertificate(sim.certificateDer);
    await sim.trustClientCertificate(pki.certificateDer);
    await pki.certificateManager.dispose();
    // `kerf run` has no enroller: the identity is issued beforehand, as enrolment would
    await ensureIdentity({ dir: path.join(stateDir, "identity"), instance: "kerf-rogue", enroller: new DevCaEnroller(cloud.ca), logger: silentLogger() });
    const dir = path.join(tmp.dir, "config");
    mkdirSync(dir);
    writeFileSync(path.join(dir, "mapping.yaml"), stringify({ machines: { rogue: { groups: [{ name: "ten", publishingInterval: 100, samplingInterval: 0, queueSize: 100, nodes: GROUP }] } } }));
    writeFileSync(
      path.join(dir, "kerf.yaml"),
      stringify({
        instance: "kerf-rogue",
        log: { level: "warn" },
        mapping: "./mapping.yaml",
        machines: [{ id: "rogue", endpoint: sim.endpointUrl, security: { mode: "SignAndEncrypt", policy: "Basic256Sha256" } }],
        cloud: { url: cloud.url, pins: [cloud.pin], caFile: cloud.ca.certFile, auth: { issuer: cloud.auth.issuer } },
      }),
    );

    const child = spawn(path.join(repo, "bin/kerf.js"), ["run", "--config", path.join(dir, "kerf.yaml"), "--state-dir", stateDir], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout!.setEncoding("utf8").on("data", (s: string) => (out += s));
    child.stderr!.setEncoding("utf8").on("data", (s: string) => (out += s));
    const exit = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    cleanups.push(async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exit;
    });
    const log = () => out.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>);
    const latest = () => cloud.store.latest("rogue");

    await waitFor("the stuck structure in the connector's log", () => log().some((l) => l.point === "hanging" && STUCK.test(String(l.msg))), 40_000);
    await waitFor("counter values in the cloud", () => Number(latest()[loadKey(0)]?.v) >= 20 && latest()["hanging"], 40_000);
    expect(latest()["hanging"]).toMatchObject({ v: null, q: BAD_DATA_ENCODING_INVALID });
    expect(child.exitCode).toBeNull();

    // node-opcua is still waiting for the server about the hanging type: stop now
    child.kill("SIGTERM");
    expect(await exit).toBe(0);
    expect(log().filter((l) => /nothing handled it/.test(String(l.msg)))).toEqual([]);
    expect(out).not.toMatch(/Unhandled|UnhandledPromiseRejection|Session has been closed/);
  });
});
