import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AttributeIds, DataType, TimestampsToReturn, type ClientSession } from "node-opcua-client";
import { loadNodeId, SIM_NODES } from "../../src/simulator/nodes.ts";
import type { Simulator } from "../../src/simulator/server.ts";
import { connect, makeClientPki, sleep, startTestSimulator, tempDir, type Connected, type TestClientPki } from "./helpers.ts";

const COUNT = 50;
const PERIOD_MS = 100;

let cleanup: () => Promise<void>;
let sim: Simulator;
let pki: TestClientPki;
let c: Connected;

beforeAll(async () => {
  let dir: string;
  ({ dir, cleanup } = await tempDir());
  [sim, pki] = await Promise.all([startTestSimulator(dir, {
      load: { count: COUNT, periodMs: PERIOD_MS },
      maxMonitoredItemsPerCall: 60,
      maxSessions: 3,
      maxSubscriptionsPerSession: 3,
    }), makeClientPki(dir, "load-client")]);
  await pki.certificateManager.trustCertificate(sim.certificateDer);
  await sim.trustClientCertificate(pki.certificateDer);
  c = await connect(sim, pki);
});

afterAll(async () => {
  await c?.close();
  await sim?.stop();
  await pki?.dispose();
  await cleanup?.();
});

async function simNs(session: ClientSession): Promise<(id: string) => string> {
  const namespaces = await session.readNamespaceArray();
  const index = namespaces.indexOf(sim.namespaceUri);
  return (id) => id.replace(`nsu=${sim.namespaceUri};`, `ns=${index};`);
}

describe("machine at its default pace", () => {
  // first in the file: the ramp is only visible during the first seconds after start
  it("ramps the spindle up after start", async () => {
    const ns = await simNs(c.session);
    const sub = await c.session.createSubscription2({ requestedPublishingInterval: 100, publishingEnabled: true, maxNotificationsPerPublish: 0 });
    const speeds: number[] = [];
    const item = await sub.monitor(
      { nodeId: ns(SIM_NODES.spindleSpeed), attributeId: AttributeIds.Value },
      { samplingInterval: 50, queueSize: 20, discardOldest: true },
      TimestampsToReturn.Both,
    );
    item.on("changed", (dv) => speeds.push(dv.value.value as number));
    await sleep(800);
    await sub.terminate();
    expect(speeds.length).toBeGreaterThanOrEqual(5);
    // it starts WORKING with the spindle at rest and a 1.5 s ramp
    expect(speeds.at(-1)!).toBeGreaterThan(speeds[0]!);
    expect(Math.max(...speeds)).toBeLessThanOrEqual(18_000 * 1.01);
  });
});

describe("load mode", () => {
  it("names the counters Load.Counter.00000 … in our namespace", async () => {
    const ns = await simNs(c.session);
    const [first, last, beyond] = await c.session.read(
      [loadNodeId(0), loadNodeId(COUNT - 1), loadNodeId(COUNT)].map((n) => ({ nodeId: ns(n), attributeId: AttributeIds.Value })),
    );
    expect(loadNodeId(42)).toBe("nsu=urn:kerf:simulator;s=Load.Counter.00042");
    expect(first!.value.dataType).toBe(DataType.UInt32);
    expect(last!.value.dataType).toBe(DataType.UInt32);
    expect(beyond!.statusCode.name).toBe("BadNodeIdUnknown");
  });

  it("delivers every value of every counter exactly once (no gap, no duplicate)", async () => {
    const ns = await simNs(c.session);
    const sub = await c.session.createSubscription2({
      requestedPublishingInterval: PERIOD_MS,
      publishingEnabled: true,
      maxNotificationsPerPublish: 0,
      requestedLifetimeCount: 100,
      requestedMaxKeepAliveCount: 10,
    });
    const received: number[][] = Array.from({ length: COUNT }, () => []);
    const stamps: number[][] = Array.from({ length: COUNT }, () => []);
    const group = await sub.monitorItems(
      Array.from({ length: COUNT }, (_, i) => ({ nodeId: ns(loadNodeId(i)), attributeId: AttributeIds.Value })),
      // sampling interval 0: the counters are exception-based, every change is pushed
      { samplingInterval: 0, queueSize: 10, discardOldest: true },
      TimestampsToReturn.Both,
    );
    group.on("changed", (_item, dv, index) => {
      received[index]!.push(dv.value.value as number);
      stamps[index]!.push(dv.sourceTimestamp!.getTime());
    });
    await sleep(1500);
    await sub.terminate();

    for (let i = 0; i < COUNT; i++) {
      const values = received[i]!;
      // ~15 periods in 1.5 s; allow for timer slack on a busy machine
      expect(values.length, `counter ${i}`).toBeGreaterThanOrEqual(10);
      for (let k = 1; k < values.length; k++) expect(values[k], `counter ${i} at ${k}`).toBe(values[k - 1]! + 1);
      // each update carries its own source timestamp
      for (let k = 1; k < values.length; k++) expect(stamps[i]![k]!).toBeGreaterThan(stamps[i]![k - 1]!);
    }
    // lockstep: all counters started at the same value (the current one at subscription time)
    const firsts = new Set(received.map((v) => v[0]));
    expect(firsts.size).toBeLessThanOrEqual(2);
  });
});

describe("server limits", () => {
  it("advertises and enforces monitored items per call, subscriptions per session and sessions", async () => {
    const [perCall, sessions, subsPerSession] = await c.session.read(
      ["i=11714", "i=24095", "i=24098"].map((nodeId) => ({ nodeId, attributeId: AttributeIds.Value })),
    );
    expect([perCall!.value.value, sessions!.value.value, subsPerSession!.value.value]).toEqual([60, 3, 3]);

    const ns = await simNs(c.session);
    const sub = await c.session.createSubscription2({ requestedPublishingInterval: 500, publishingEnabled: true });
    const items = Array.from({ length: 61 }, (_, i) => ({ nodeId: ns(loadNodeId(i % COUNT)), attributeId: AttributeIds.Value }));
    await expect(sub.monitorItems(items, { samplingInterval: 0, queueSize: 1 }, TimestampsToReturn.Both)).rejects.toThrow(/BadTooManyOperations/);
    const more = [await c.session.createSubscription2({ requestedPublishingInterval: 500 }), await c.session.createSubscription2({ requestedPublishingInterval: 500 })];
    await expect(c.session.createSubscription2({ requestedPublishingInterval: 500 })).rejects.toThrow(/BadTooManySubscriptions/);
    for (const s of [sub, ...more]) await s.terminate();

    const extra: Connected[] = [];
    try {
      extra.push(await connect(sim, pki), await connect(sim, pki));
      await expect(connect(sim, pki)).rejects.toThrow(/BadTooManySessions/);
    } finally {
      for (const e of extra) await e.close();
    }
  });
});

describe("notifications per publish", () => {
  it("sends at most maxNotificationsPerPublish notifications in one publish response", async () => {
    const { dir, cleanup: done } = await tempDir();
    const small = await startTestSimulator(dir, { load: { count: 30, periodMs: 200 }, maxNotificationsPerPublish: 7 });
    const client = await makeClientPki(dir, "cap-client");
    let conn: Connected | undefined;
    try {
      await client.certificateManager.trustCertificate(small.certificateDer);
      await small.trustClientCertificate(client.certificateDer);
      conn = await connect(small, client);
      const namespaces = await conn.session.readNamespaceArray();
      const index = namespaces.indexOf(small.namespaceUri);
      const sub = await conn.session.createSubscription2({ requestedPublishingInterval: 200, publishingEnabled: true, maxNotificationsPerPublish: 0 });
      const sizes: number[] = [];
      sub.on("raw_notification", (message: { notificationData?: { monitoredItems?: unknown[] }[] }) => {
        for (const n of message.notificationData ?? []) if (n.monitoredItems) sizes.push(n.monitoredItems.length);
      });
      await sub.monitorItems(
        Array.from({ length: 30 }, (_, i) => ({ nodeId: loadNodeId(i).replace(`nsu=${small.namespaceUri};`, `ns=${index};`), attributeId: AttributeIds.Value })),
        { samplingInterval: 0, queueSize: 10, discardOldest: true },
        TimestampsToReturn.Both,
      );
      await sleep(1500);
      await sub.terminate();
      // 30 changes per period: without the cap they would come as one response of 30
      expect(sizes.length).toBeGreaterThan(10);
      expect(Math.max(...sizes)).toBe(7);
    } finally {
      await conn?.close();
      await small.stop();
      await client.dispose();
      await done();
    }
  });
});
