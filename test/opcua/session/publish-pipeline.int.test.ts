import { afterEach, describe, expect, it } from "vitest";
import { AttributeIds, MessageSecurityMode, OPCUAClient, SecurityPolicy, TimestampsToReturn, type ClientSession, type DataValue } from "node-opcua-client";
import { ServerSession } from "node-opcua-server";
import { resolveMappedNodeId } from "../../../src/opcua/subscription/nodes.ts";
import { deepenPublishPipeline, MAX_PUBLISH_REQUESTS } from "../../../src/opcua/session/publish-pipeline.ts";
import { loadNodeId } from "../../../src/simulator/nodes.ts";
import { tempDir, waitFor } from "../../helpers/env.ts";
import { simulatorAndPki } from "../../helpers/opcua.ts";

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const COUNTERS = 2000;

/** A session on a simulator that sends at most 50 notifications per response: with 2,000 counters changing every 100 ms it always has more queued. */
async function backloggedSession(deepen: boolean, serverQueueLimit?: number) {
  const tmp = await tempDir();
  cleanups.push(tmp.cleanup);
  const before = ServerSession.maxPublishRequestInQueue;
  if (serverQueueLimit !== undefined) {
    ServerSession.maxPublishRequestInQueue = serverQueueLimit;
    cleanups.push(async () => (ServerSession.maxPublishRequestInQueue = before));
  }
  const { sim, pki } = await simulatorAndPki(tmp.dir, cleanups, { load: { count: COUNTERS, periodMs: 100 }, maxNotificationsPerPublish: 50 });
  const client = OPCUAClient.create({
    applicationUri: pki.applicationUri,
    clientCertificateManager: pki.certificateManager,
    certificateFile: pki.certificateFile,
    privateKeyFile: pki.privateKeyFile,
    securityMode: MessageSecurityMode.SignAndEncrypt,
    securityPolicy: SecurityPolicy.Basic256Sha256,
    endpointMustExist: false,
    connectionStrategy: { maxRetry: 0 },
  });
  await client.connect(sim.endpointUrl);
  cleanups.push(() => client.disconnect());
  const session = await client.createSession();
  cleanups.push(() => session.close());
  if (deepen) {
    const stop = deepenPublishPipeline(client, session);
    cleanups.push(async () => stop());
  }
  const subscription = await session.createSubscription2({ requestedPublishingInterval: 100, requestedMaxKeepAliveCount: 20, requestedLifetimeCount: 600, maxNotificationsPerPublish: 0, publishingEnabled: true, priority: 1 });
  const ns = await session.readNamespaceArray();
  let values = 0;
  const group = await subscription.monitorItems(
    Array.from({ length: COUNTERS }, (_, i) => ({ nodeId: resolveMappedNodeId(loadNodeId(i), ns), attributeId: AttributeIds.Value })),
    { samplingInterval: 0, queueSize: 10, discardOldest: true },
    TimestampsToReturn.Both,
  );
  group.on("changed", (_mi: unknown, _dv: DataValue) => values++);
  return { session, values: () => values };
}

const pending = (session: ClientSession) => (session as unknown as { getPublishEngine(): { nbPendingPublishRequests: number } }).getPublishEngine().nbPendingPublishRequests;

describe("publish requests in flight", () => {
  it("grow while the server says it has more notifications, up to the cap; without the pipeline node-opcua keeps 5", { timeout: 60_000 }, async () => {
    const plain = await backloggedSession(false);
    await waitFor("values", () => plain.values() > 20_000, 30_000);
    expect(pending(plain.session)).toBeLessThanOrEqual(5);
    for (const c of cleanups.splice(0).reverse()) await c();

    const deep = await backloggedSession(true);
    let most = 0;
    const sampler = setInterval(() => (most = Math.max(most, pending(deep.session))), 5);
    cleanups.push(async () => clearInterval(sampler));
    await waitFor("values", () => deep.values() > 20_000 && most >= MAX_PUBLISH_REQUESTS, 30_000);
    await waitFor("more values", () => deep.values() > 40_000, 30_000);
    // a request that node-opcua sends a turn later than it counts it may add one or two
    expect(most).toBeLessThanOrEqual(MAX_PUBLISH_REQUESTS + 2);
  });

  it("stays within what a server accepts (BadTooManyPublishRequests) and keeps the values flowing", { timeout: 60_000 }, async () => {
    const limited = await backloggedSession(true, 8);
    const engine = () => (limited.session as unknown as { getPublishEngine(): { nbMaxPublishRequestsAcceptedByServer: number } }).getPublishEngine();
    // requests already on the wire when the server first refuses one still arrive: node-opcua learns the limit from the refusals
    const learned = await waitFor("the server's limit learned", () => (engine().nbMaxPublishRequestsAcceptedByServer < 1000 ? engine().nbMaxPublishRequestsAcceptedByServer : false), 30_000);
    let most = 0;
    const sampler = setInterval(() => (most = Math.max(most, pending(limited.session))), 5);
    cleanups.push(async () => clearInterval(sampler));
    const start = limited.values();
    await waitFor("more values", () => limited.values() > start + 10_000, 30_000);
    expect(learned).toBeLessThanOrEqual(20);
    expect(most).toBeLessThanOrEqual(learned);
  });
});
