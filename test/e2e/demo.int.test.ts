import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AttributeIds, MessageSecurityMode, OPCUAClient, SecurityPolicy } from "node-opcua-client";
import { SIM_NODES } from "../../src/simulator/nodes.ts";
import { resolveMappedNodeId } from "../../src/opcua/subscription/nodes.ts";
import { checkSeries, DEMO_MACHINE, loadKey, startEnvironment, waitFor } from "../helpers/env.ts";

describe("demo path: simulator → connector → devcloud", () => {
  let env: Awaited<ReturnType<typeof startEnvironment>>;
  let startedAt = 0;

  beforeAll(async () => {
    startedAt = Date.now();
    env = await startEnvironment({ load: { count: 20, periodMs: 100 } });
  });
  afterAll(async () => {
    await env?.stop();
  });

  it("delivers mapped values with their keys, values and source timestamps", async () => {
    const store = env.demo.devcloud.store;
    const latest = await waitFor("spindle speed and 15 load ticks in the cloud", () => {
      const l = store.latest(DEMO_MACHINE);
      return l["spindle.speed"] && Number(l[loadKey(0)]?.v) >= 15 ? l : undefined;
    });

    // The serial number is static: it must equal what the server itself says.
    const client = OPCUAClient.create({ endpointMustExist: false, securityMode: MessageSecurityMode.None, securityPolicy: SecurityPolicy.None });
    await client.connect(env.demo.simulator.endpointUrl);
    try {
      const session = await client.createSession();
      const ns = await session.readNamespaceArray();
      const dv = await session.read({ nodeId: resolveMappedNodeId(SIM_NODES.serialNumber, ns), attributeId: AttributeIds.Value });
      expect(latest["serial"]?.v).toBe(dv.value.value);
      await session.close();
    } finally {
      await client.disconnect();
    }

    expect(typeof latest["spindle.speed"]!.v).toBe("number");
    expect(latest["spindle.speed"]!.q).toBe(0);
    // Source timestamps: ISO 8601 UTC, recent.
    for (const item of Object.values(latest)) {
      expect(item.t).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    }
    // taken by this run's simulator, not made up: between its start and now
    expect(Date.parse(latest[loadKey(0)]!.t)).toBeGreaterThanOrEqual(startedAt);
    expect(Date.parse(latest[loadKey(0)]!.t)).toBeLessThanOrEqual(Date.now());

    // Load counters: consecutive values, one per period, no duplicates, timestamps rising with the values.
    for (let i = 0; i < 20; i++) {
      const items = store.items(DEMO_MACHINE, loadKey(i));
      const s = checkSeries(items);
      expect(s.duplicates, loadKey(i)).toBe(0);
      expect(s.gaps, loadKey(i)).toEqual([]);
      const times = items.map((x) => Date.parse(x.t));
      expect(times).toEqual([...times].sort((a, b) => a - b));
    }
    expect(store.counts().duplicateItems).toBe(0);
  });

  it("reports the machine online to the cloud", async () => {
    const status = await waitFor("an online status", () =>
      env.demo.devcloud.store.events(DEMO_MACHINE).find((m) => m.kind === "status" && m.state === "online"),
    );
    expect(status).toMatchObject({ kind: "status", machine: DEMO_MACHINE, state: "online" });
  });
});
