import path from "node:path";
import {
  AttributeIds,
  MessageSecurityMode,
  OPCUAClient,
  SecurityPolicy,
  TimestampsToReturn,
  VariableIds,
  type ClientSession,
  type ClientSubscription,
} from "node-opcua-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../src/log.ts";
import { loadNodeId } from "../../src/simulator/nodes.ts";
import { startSimulator, type Simulator } from "../../src/simulator/server.ts";
import { tempDir } from "../helpers/env.ts";

/** The simulator with every limit low, so that each can be hit with a handful of items. */
const LIMITS = {
  maxSessions: 2,
  maxSubscriptions: 3,
  maxSubscriptionsPerSession: 2,
  maxMonitoredItemsPerCall: 7,
  maxMonitoredItemsPerSubscription: 10,
  maxMonitoredItems: 16,
};

let sim: Simulator;
let cleanup: () => Promise<void>;
const clients: OPCUAClient[] = [];

beforeAll(async () => {
  const tmp = await tempDir("kerf-limits-");
  sim = await startSimulator({ pkiDir: path.join(tmp.dir, "sim"), logger: silentLogger(), load: { count: 40, periodMs: 1000 }, ...LIMITS });
  cleanup = async () => {
    for (const c of clients) await c.disconnect().catch(() => undefined);
    await sim.stop();
    await tmp.cleanup();
  };
});
afterAll(() => cleanup?.());

async function openSession(): Promise<{ session: ClientSession; close: () => Promise<void> }> {
  const client = OPCUAClient.create({ securityMode: MessageSecurityMode.None, securityPolicy: SecurityPolicy.None, endpointMustExist: false, connectionStrategy: { maxRetry: 0 } });
  clients.push(client);
  await client.connect(sim.endpointUrl);
  const session = await client.createSession();
  namespaceIndex ||= (await session.readNamespaceArray()).indexOf(sim.namespaceUri);
  return { session, close: () => client.disconnect() };
}

function subscribe(session: ClientSession): Promise<ClientSubscription> {
  return session.createSubscription2({ requestedPublishingInterval: 1000, requestedMaxKeepAliveCount: 10, requestedLifetimeCount: 100, publishingEnabled: true });
}

/** The status of each item, monitoring load counters `from`..`from + n - 1` in one call. */
async function monitor(subscription: ClientSubscription, from: number, n: number): Promise<string[]> {
  const items = Array.from({ length: n }, (_, i) => ({ nodeId: loadNodeId(from + i).replace(`nsu=${sim.namespaceUri}`, `ns=${namespaceIndex}`), attributeId: AttributeIds.Value }));
  const group = await subscription.monitorItems(items, { samplingInterval: 1000, queueSize: 1 }, TimestampsToReturn.Both);
  return group.monitoredItems.map((mi) => mi.statusCode.name);
}
let namespaceIndex = 0;

describe("simulator server limits", () => {
  it("publishes its limits in ServerCapabilities and OperationLimits (ns=0;i=11714)", async () => {
    const { session, close } = await openSession();
    expect(VariableIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall).toBe(11714);
    const read = async (id: number) => (await session.read({ nodeId: `ns=0;i=${id}`, attributeId: AttributeIds.Value })).value.value as number;
    expect(await read(11714)).toBe(LIMITS.maxMonitoredItemsPerCall);
    expect(await read(VariableIds.Server_ServerCapabilities_MaxSessions)).toBe(LIMITS.maxSessions);
    expect(await read(VariableIds.Server_ServerCapabilities_MaxSubscriptions)).toBe(LIMITS.maxSubscriptions);
    expect(await read(VariableIds.Server_ServerCapabilities_MaxSubscriptionsPerSession)).toBe(LIMITS.maxSubscriptionsPerSession);
    expect(await read(VariableIds.Server_ServerCapabilities_MaxMonitoredItems)).toBe(LIMITS.maxMonitoredItems);
    expect(await read(VariableIds.Server_ServerCapabilities_MaxMonitoredItemsPerSubscription)).toBe(LIMITS.maxMonitoredItemsPerSubscription);
    await close(); // the next test counts sessions
  });

  it("refuses more items per call, per subscription and on the whole server, and more subscriptions and sessions", async () => {
    const { session: a } = await openSession();
    const a1 = await subscribe(a);
    // 8 items in one call: the whole call is refused
    await expect(monitor(a1, 0, 8)).rejects.toThrow(/BadTooManyOperations/);
    // 7 + 3 fill the subscription; the next item is one too many for it
    expect(await monitor(a1, 0, 7)).toEqual(Array(7).fill("Good"));
    expect(await monitor(a1, 7, 3)).toEqual(Array(3).fill("Good"));
    expect(await monitor(a1, 10, 1)).toEqual(["BadTooManyMonitoredItems"]);

    // a second subscription may take 6 more; the server as a whole holds 16
    const a2 = await subscribe(a);
    expect(await monitor(a2, 20, 6)).toEqual(Array(6).fill("Good"));
    expect(await monitor(a2, 26, 2)).toEqual(["BadTooManyMonitoredItems", "BadTooManyMonitoredItems"]);

    // a third subscription in this session is one too many for the session…
    await expect(subscribe(a)).rejects.toThrow(/BadTooManySubscriptions/);
    // …and in another session, the fourth on the server is one too many for the server
    const { session: b } = await openSession();
    await subscribe(b);
    await expect(subscribe(b)).rejects.toThrow(/BadTooManySubscriptions/);

    // and with two sessions open, a third is one too many
    await expect(openSession()).rejects.toThrow(/BadTooManySessions/);
  });
});
