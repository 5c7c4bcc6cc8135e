/**
 * The ceiling for the end-to-end benchmark: a bare node-opcua subscription to the same
 * load counters, that only counts changes per second of source timestamp.
 *
 *   node src/bench/bare-client.ts '<json options>'
 *
 * It prints "ready" once subscribed. A line "window START END" on stdin (epoch seconds) starts
 * recording latencies (source timestamp to receipt) of values from those seconds. On SIGTERM
 * it prints one JSON line: { buckets: {sec: count}, latency: {p50Ms, p99Ms, maxMs}, everyItemSeenMs }.
 */
import { createInterface } from "node:readline";
import { AttributeIds, MessageSecurityMode, OPCUAClient, SecurityPolicy, TimestampsToReturn, type ClientMonitoredItemBase, type DataValue } from "node-opcua-client";
import { silentLogger } from "../log.ts";
import { resolveMappedNodeId } from "../opcua/subscription/nodes.ts";
import { openClientPki } from "../opcua/trust/pki.ts";
import { loadNodeId } from "../simulator/nodes.ts";
import { LatencyHistogram } from "./histogram.ts";

interface Options {
  endpointUrl: string;
  pkiDir: string;
  nodes: number;
  periodMs: number;
  mode: keyof typeof MessageSecurityMode;
  policy: keyof typeof SecurityPolicy;
  /** Epoch ms the harness spawned this process: every-item-seen counts from there. */
  spawnedAt: number;
}

const o = JSON.parse(process.argv[2]!) as Options;
const buckets: Record<number, number> = {};
const latency = new LatencyHistogram();
let window = { start: Infinity, end: -Infinity };
const seen = new Uint8Array(o.nodes);
let unseen = o.nodes;
let everyItemSeenMs = NaN;
createInterface({ input: process.stdin }).on("line", (line) => {
  const [word, start, end] = line.split(" ");
  if (word === "window") window = { start: Number(start), end: Number(end) };
});

const pki = await openClientPki({ dir: o.pkiDir, instance: "bench-bare", logger: silentLogger() });
const client = OPCUAClient.create({
  applicationUri: pki.applicationUri,
  clientCertificateManager: pki.certificateManager,
  securityMode: MessageSecurityMode[o.mode],
  securityPolicy: SecurityPolicy[o.policy],
  connectionStrategy: { maxRetry: 0 },
  requestedSessionTimeout: 60_000,
});
await client.connect(o.endpointUrl);
const session = await client.createSession();
const ns = await session.readNamespaceArray();
const subscription = await session.createSubscription2({
  requestedPublishingInterval: o.periodMs,
  requestedMaxKeepAliveCount: 20,
  requestedLifetimeCount: 600,
  maxNotificationsPerPublish: 0,
  publishingEnabled: true,
  priority: 10,
});
for (let start = 0; start < o.nodes; start += 5000) {
  const ids = Array.from({ length: Math.min(5000, o.nodes - start) }, (_, i) => ({ nodeId: resolveMappedNodeId(loadNodeId(start + i), ns), attributeId: AttributeIds.Value }));
  const group = await subscription.monitorItems(ids, { samplingInterval: 0, queueSize: 10, discardOldest: true }, TimestampsToReturn.Both);
  const index = new Map<ClientMonitoredItemBase, number>(group.monitoredItems.map((mi, i) => [mi, start + i]));
  group.on("changed", (mi: ClientMonitoredItemBase, dv: DataValue) => {
    const now = Date.now();
    const t = dv.sourceTimestamp?.getTime() ?? now;
    const sec = Math.floor(t / 1000);
    buckets[sec] = (buckets[sec] ?? 0) + 1;
    if (sec >= window.start && sec < window.end) latency.add(now - t);
    const i = index.get(mi);
    if (i !== undefined && !seen[i]) {
      seen[i] = 1;
      if (--unseen === 0) everyItemSeenMs = now - o.spawnedAt;
    }
  });
}
process.stdout.write("ready\n");
process.once("SIGTERM", async () => {
  process.stdout.write(JSON.stringify({ buckets, latency: latency.summary(), everyItemSeenMs }) + "\n");
  await session.close().catch(() => undefined);
  await client.disconnect().catch(() => undefined);
  process.exit(0);
});
