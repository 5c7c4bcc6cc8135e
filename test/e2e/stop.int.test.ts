/**
 * SIGTERM under the container contract (SIGKILL 10 s later): `kerf run` must have exited by
 * itself, with code 0, in every state it can be in, and everything it had received must be at
 * the cloud or still in its buffer.
 */
import { writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { ensureIdentity } from "../../src/certs/identity.ts";
import { DevCaEnroller } from "../../src/certs/identity.ts";
import { writeDemoConfig, DEMO_INSTANCE, type Demo } from "../../src/demo/setup.ts";
import { startDevCloud } from "../../src/devcloud/index.ts";
import type { StoredItem } from "../../src/devcloud/store.ts";
import { silentLogger } from "../../src/log.ts";
import { openClientPki } from "../../src/opcua/trust/pki.ts";
import { loadNodeId, SIM_NODES } from "../../src/simulator/nodes.ts";
import { startSimulator } from "../../src/simulator/server.ts";
import { DEMO_MACHINE, loadKey, tempDir, waitFor } from "../helpers/env.ts";
import { blackHole, demoForKerfRun, editConfig, killHard, missingValues, readBuffer, startConnector, stopLikeAContainer, switchableProxy, type Connector } from "./connector.ts";

const COUNTERS = 10;
const cleanups: (() => Promise<unknown>)[] = [];
const connectors: Connector[] = [];
afterEach(async () => {
  for (const c of connectors.splice(0)) await killHard(c);
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

async function demoEnv(options: { commands?: boolean } = {}): Promise<{ demo: Demo; dir: string; stateDir: string }> {
  const env = await demoForKerfRun({ load: { count: COUNTERS, periodMs: 100 }, ...options });
  cleanups.push(() => env.stop());
  editConfig(env.demo.configFile, (c) => (c.log = { level: "info" }));
  return { demo: env.demo, dir: env.dir, stateDir: env.demo.connectorStateDir };
}

function run(configFile: string, stateDir: string): Connector {
  const c = startConnector(configFile, stateDir);
  connectors.push(c);
  return c;
}

/** Every load counter's values, at the cloud and in the stopped connector's buffer, have no hole. */
function expectNothingLost(cloudItems: (machine: string, key: string) => StoredItem[], stateDir: string, machines: string[]): void {
  for (const machine of machines) {
    const { items } = readBuffer(stateDir, machine);
    for (let i = 0; i < COUNTERS; i++) {
      const key = loadKey(i);
      expect(missingValues(cloudItems(machine, key), items.get(key) ?? []), `${machine} ${key}`).toEqual([]);
    }
  }
  const { stats } = readBuffer(stateDir, machines[0]!);
  expect(stats.droppedItems).toBe(0);
  expect(stats.appendedItems).toBe(stats.ackedItems + stats.droppedItems + stats.items);
}

const flowing = (store: { latest(machine: string): Record<string, StoredItem> }, machine: string, atLeast: number) => () => Number(store.latest(machine)[loadKey(0)]?.v) >= atLeast;

/** The devcloud reached through a TCP proxy that a test can cut; the tokens stay for the devcloud's own URL. */
async function cloudBehindProxy(demo: Demo): Promise<Awaited<ReturnType<typeof switchableProxy>>> {
  const cloud = await switchableProxy(demo.devcloud.port);
  cleanups.push(() => cloud.close());
  editConfig(demo.configFile, (c) => {
    c.cloud.url = `https://127.0.0.1:${cloud.port}`;
    c.cloud.auth.resource = demo.devcloud.url;
  });
  return cloud;
}

describe("SIGTERM: kerf run exits with 0 before the SIGKILL, losing nothing", () => {
  it("while streaming", { timeout: 120_000 }, async () => {
    const { demo, stateDir } = await demoEnv();
    const c = run(demo.configFile, stateDir);
    await waitFor("values at the cloud", flowing(demo.devcloud.store, DEMO_MACHINE, 10), 60_000);

    expect(await stopLikeAContainer(c)).toEqual({ code: 0, signal: null, killed: false });
    expectNothingLost((m, k) => demo.devcloud.store.items(m, k), stateDir, [DEMO_MACHINE]);
  });

  it("while the command channel's long poll is open", { timeout: 120_000 }, async () => {
    const { demo, stateDir } = await demoEnv({ commands: true });
    const c = run(demo.configFile, stateDir);
    await waitFor("values at the cloud", flowing(demo.devcloud.store, DEMO_MACHINE, 10), 60_000);
    await waitFor("a command poll", () => demo.devcloud.commands.seen(DEMO_INSTANCE).lastPollAt !== null, 60_000);

    expect(await stopLikeAContainer(c)).toEqual({ code: 0, signal: null, killed: false });
    expectNothingLost((m, k) => demo.devcloud.store.items(m, k), stateDir, [DEMO_MACHINE]);
  });

  it("while enrolling: the EST server accepts the connection and never answers", { timeout: 120_000 }, async () => {
    const { demo, stateDir } = await demoEnv();
    const hole = await blackHole();
    cleanups.push(() => hole.close());
    editConfig(demo.configFile, (c) => (c.cloud.enrolment.url = `https://127.0.0.1:${hole.port}/.well-known/est`));
    const c = run(demo.configFile, stateDir);
    await waitFor("an enrolment hanging at the silent EST server", () => hole.accepted() >= 1, 60_000);

    expect(await stopLikeAContainer(c)).toEqual({ code: 0, signal: null, killed: false });
  });

  it("during an outage, with a backlog in the buffer and requests refused", { timeout: 120_000 }, async () => {
    const { demo, stateDir } = await demoEnv();
    const cloud = await cloudBehindProxy(demo);
    const c = run(demo.configFile, stateDir);
    await waitFor("values at the cloud", flowing(demo.devcloud.store, DEMO_MACHINE, 10), 60_000);
    cloud.mode("refuse");
    await waitFor("the uplink down, and values waiting", () => c.lines.some((l) => l.event === "uplink_down") && cloud.accepted() >= 2, 60_000);

    expect(await stopLikeAContainer(c)).toEqual({ code: 0, signal: null, killed: false });
    expect(readBuffer(stateDir, DEMO_MACHINE).stats.items).toBeGreaterThan(0);
    expectNothingLost((m, k) => demo.devcloud.store.items(m, k), stateDir, [DEMO_MACHINE]);
  });

  it("right after its OPC UA server went away", { timeout: 120_000 }, async () => {
    const { demo, stateDir } = await demoEnv();
    const c = run(demo.configFile, stateDir);
    await waitFor("values at the cloud", flowing(demo.devcloud.store, DEMO_MACHINE, 10), 60_000);
    await demo.simulator.stop();

    expect(await stopLikeAContainer(c)).toEqual({ code: 0, signal: null, killed: false });
    expectNothingLost((m, k) => demo.devcloud.store.items(m, k), stateDir, [DEMO_MACHINE]);
  });

  it("while the cloud accepts connections and never answers (requests in flight stay buffered)", { timeout: 120_000 }, async () => {
    const { demo, stateDir } = await demoEnv();
    // The cloud behind a TCP proxy that can turn into a peer that accepts and never answers.
    const cloud = await cloudBehindProxy(demo);
    const c = run(demo.configFile, stateDir);
    await waitFor("values at the cloud", flowing(demo.devcloud.store, DEMO_MACHINE, 10), 60_000);
    cloud.mode("black-hole");
    await waitFor("requests hanging at the silent cloud", () => cloud.accepted() >= 1, 30_000);

    expect(await stopLikeAContainer(c)).toEqual({ code: 0, signal: null, killed: false });
    expect(readBuffer(stateDir, DEMO_MACHINE).stats.items).toBeGreaterThan(0);
    expectNothingLost((m, k) => demo.devcloud.store.items(m, k), stateDir, [DEMO_MACHINE]);
  });

  it("while CreateMonitoredItems calls for 20,000 items are under way over a slow link", { timeout: 180_000 }, async () => {
    const tmp = await tempDir();
    cleanups.push(tmp.cleanup);
    const logger = silentLogger();
    const cloud = await startDevCloud({ dir: path.join(tmp.dir, "devcloud"), logger });
    cleanups.push(() => cloud.stop());
    // A server that takes 200 items per call: 100 calls for the mapping.
    const sim = await startSimulator({ pkiDir: path.join(tmp.dir, "sim"), logger, load: { count: 20_000, periodMs: 3_600_000 }, maxMonitoredItemsPerCall: 200 });
    cleanups.push(() => sim.stop());
    const stateDir = path.join(tmp.dir, "connector");
    const pki = await openClientPki({ dir: path.join(stateDir, "pki"), instance: DEMO_INSTANCE, logger });
    await pki.certificateManager.trustCertificate(sim.certificateDer);
    await sim.trustClientCertificate(pki.certificateDer);
    await pki.certificateManager.dispose();
    await ensureIdentity({ dir: path.join(stateDir, "identity"), instance: DEMO_INSTANCE, enroller: new DevCaEnroller(cloud.ca), logger });
    // About 64 bytes per item: the 20,000 items take 20 s to go up at 64 KB/s.
    const proxy = await switchableProxy(sim.port, { upstreamBytesPerSecond: 64_000 });
    cleanups.push(() => proxy.close());
    const { configFile } = await writeDemoConfig({ dir: path.join(tmp.dir, "config"), endpointUrl: `opc.tcp://127.0.0.1:${proxy.port}`, devcloud: cloud, securityMode: "SignAndEncrypt", securityPolicy: "Aes256_Sha256_RsaPss" });
    editConfig(configFile, (c) => (c.log = { level: "info" }));
    const nodes = Array.from({ length: 20_000 }, (_, i) => ({ key: loadKey(i), node: loadNodeId(i) }));
    writeFileSync(path.join(tmp.dir, "config", "mapping.yaml"), stringify({ machines: { [DEMO_MACHINE]: { groups: [{ name: "load", publishingInterval: 500, samplingInterval: 0, nodes }] } } }));

    const c = run(configFile, stateDir);
    // Each call carries a few dozen KB; the channel and session before them much less.
    await waitFor("CreateMonitoredItems calls under way", () => proxy.upstreamBytes() > 200_000, 90_000, 20);
    const subscribedBefore = c.lines.some((l) => l.msg === "connected and subscribed");

    expect(await stopLikeAContainer(c)).toEqual({ code: 0, signal: null, killed: false });
    expect(subscribedBefore, "the subscribe had already finished when SIGTERM was sent").toBe(false);
    const { stats } = readBuffer(stateDir, DEMO_MACHINE);
    expect(stats.droppedItems).toBe(0);
    expect(stats.appendedItems).toBe(stats.ackedItems + stats.items);
  });

  it("while reconnecting: a channel repair and a connect attempt hanging on black holes, and a backoff sleep", { timeout: 120_000 }, async () => {
    const { demo, stateDir } = await demoEnv();
    const repairing = await switchableProxy(demo.simulator.port);
    cleanups.push(() => repairing.close());
    const hole = await blackHole();
    cleanups.push(() => hole.close());
    const refused = await freePort();
    editConfig(demo.configFile, (c) => {
      const base = c.machines[0];
      c.machines = [
        { ...base, id: "m-repair", endpoint: `opc.tcp://127.0.0.1:${repairing.port}` },
        // a slow network's setting: an attempt that hangs outlives the SIGKILL deadline
        { ...base, id: "m-hole", endpoint: `opc.tcp://127.0.0.1:${hole.port}`, connectTimeoutMs: 60_000 },
        { ...base, id: "m-refused", endpoint: `opc.tcp://127.0.0.1:${refused}` },
      ];
    });
    const group = { name: "load", publishingInterval: 100, samplingInterval: 0, queueSize: 10, nodes: Array.from({ length: COUNTERS }, (_, i) => ({ key: loadKey(i), node: loadNodeId(i) })) };
    const other = { name: "g", publishingInterval: 250, nodes: [{ key: "spindle.speed", node: SIM_NODES.spindleSpeed }] };
    writeFileSync(path.join(path.dirname(demo.configFile), "mapping.yaml"), stringify({ machines: { "m-repair": { groups: [group] }, "m-hole": { groups: [other] }, "m-refused": { groups: [other] } } }));

    const c = run(demo.configFile, stateDir);
    await waitFor("values from m-repair", flowing(demo.devcloud.store, "m-repair", 10), 60_000);
    repairing.mode("black-hole");
    // the log says a repeated line once per 10 s: one is enough to know m-refused sleeps in its backoff
    const backoffs = () => c.lines.filter((l) => l.machine === "m-refused" && l.msg === "reconnecting after backoff").length;
    await waitFor("a channel repair hanging, a connect hanging, and backoff sleeps", () => repairing.accepted() >= 1 && hole.accepted() >= 1 && backoffs() >= 1, 30_000);

    expect(await stopLikeAContainer(c)).toEqual({ code: 0, signal: null, killed: false });
    expectNothingLost((m, k) => demo.devcloud.store.items(m, k), stateDir, ["m-repair"]);
  });
});

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}
