/**
 * The ceiling for the end-to-end benchmark: a bare node-opcua subscription to the same
 * load counters, that only counts changes per second of source timestamp.
 *
 *   node src/bench/bare-client.ts '<json options>'
 *
 * It prints "ready" once subscribed, and on SIGTERM one JSON line: { buckets: {sec: count} }.
 */
import { AttributeIds, MessageSecurityMode, OPCUAClient, SecurityPolicy, TimestampsToReturn, type DataValue } from "node-opcua-client";
import { silentLogger } from "../log.ts";
import { resolveMappedNodeId } from "../opcua/nodes.ts";
import { openClientPki } from "../opcua/pki.ts";
import { loadNodeId } from "../simulator/nodes.ts";

interface Options {
  endpointUrl: string;
  pkiDir: string;
  nodes: number;
  periodMs: number;
  mode: keyof typeof MessageSecurityMode;
  policy: keyof typeof SecurityPolicy;
}

const o = JSON.parse(process.argv[2]!) as Options;
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
const buckets: Record<number, number> = {};
for (let start = 0; start < o.nodes; start += 5000) {
  const ids = Array.from({ length: Math.min(5000, o.nodes - start) }, (_, i) => ({ nodeId: resolveMappedNodeId(loadNodeId(start + i), ns), attributeId: AttributeIds.Value }));
  const group = await subscription.monitorItems(ids, { samplingInterval: 0, queueSize: 10, discardOldest: true }, TimestampsToReturn.Both);
  group.on("changed", (_mi: unknown, dv: DataValue) => {
    const sec = Math.floor((dv.sourceTimestamp?.getTime() ?? Date.now()) / 1000);
    buckets[sec] = (buckets[sec] ?? 0) + 1;
  });
}
process.stdout.write("ready\n");
process.once("SIGTERM", async () => {
  process.stdout.write(JSON.stringify({ buckets }) + "\n");
  await session.close().catch(() => undefined);
  await client.disconnect().catch(() => undefined);
  process.exit(0);
});
