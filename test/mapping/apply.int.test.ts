import { AttributeIds } from "node-opcua-client";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { GroupSpec } from "../../src/opcua/types.ts";
import { loadNodeId, SIM_NODES } from "../../src/simulator/nodes.ts";
import { checkSeries, point, sleep, startBench, subscribe, waitFor, type Bench, type Harness } from "./helpers.ts";

// All counters step together every 50 ms and share each step's timestamp.
const PERIOD_MS = 50;

let bench: Bench;
let h: Harness | undefined;
beforeAll(async () => {
  bench = await startBench({ load: { count: 6, periodMs: PERIOD_MS } });
});
afterEach(async () => {
  await h?.dispose();
  h = undefined;
});
afterAll(async () => {
  await bench?.stop();
});

/** The server's own count of a subscription's monitored items (GetMonitoredItems method). */
async function serverItems(subscriptionId: number | undefined): Promise<number> {
  const session = bench.session as unknown as { getMonitoredItems(id: number): Promise<{ serverHandles: Uint32Array | number[] }> };
  return (await session.getMonitoredItems(subscriptionId!)).serverHandles.length;
}

/** The priority of each subscription as the server holds it (its SubscriptionDiagnosticsArray). */
async function serverPriorities(): Promise<Map<number, number>> {
  const dv = await bench.session.read({ nodeId: "i=2290", attributeId: AttributeIds.Value });
  const list = (dv.value.value ?? []) as { subscriptionId: number; priority: number }[];
  return new Map(list.map((d) => [d.subscriptionId, d.priority]));
}

describe("SubscriptionSet.apply", () => {
  it("adds, removes, modifies and recreates only what changed, while another item flows without a gap", async () => {
    const steady = { name: "steady", publishingInterval: 100, nodes: [point("steady", loadNodeId(0))] };
    const before: GroupSpec[] = [
      steady,
      { name: "edit", publishingInterval: 100, nodes: [point("mod", loadNodeId(1)), point("gone", loadNodeId(2)), point("move", loadNodeId(3)), point("local", loadNodeId(4))] },
    ];
    h = await subscribe(bench, before);
    await waitFor("values", () => h!.items("local").length >= 5, 5_000);
    const editId = h.set.subscriptionId("edit");
    expect(await serverItems(editId)).toBe(4);

    const next: GroupSpec[] = [
      steady,
      {
        name: "edit",
        publishingInterval: 200,
        nodes: [
          point("mod", loadNodeId(1), { deadband: { type: "absolute", value: 2.5 } }),
          point("move", SIM_NODES.serialNumber, { samplingInterval: 100 }),
          point("local", loadNodeId(4), { scale: 2 }),
          point("added", loadNodeId(5)),
        ],
      },
      { name: "fresh", publishingInterval: 100, nodes: [point("fresh", loadNodeId(0))] },
    ];
    const result = await h.set.apply(next);
    const applied = h.messages.length;
    expect({ added: result.added.sort(), removed: result.removed, changed: result.changed.sort() }).toEqual({ added: ["added", "fresh"], removed: ["gone"], changed: ["local", "mod", "move"] });
    expect(h.set.subscriptionId("edit")).toBe(editId); // the same subscription, changed in place
    expect(await serverItems(editId)).toBe(4);
    expect(await serverItems(h.set.subscriptionId("fresh"))).toBe(1);
    expect(h.set.itemCount).toBe(6);

    await sleep(500); // values queued under the old parameters have been published by now
    const settled = h.messages.length;
    await waitFor("values after the change", () => h!.items("added", settled).length >= 10, 5_000);
    const items = (key: string) => h!.items(key, settled);

    // modified in place: the deadband now lets every third step through
    const mod = items("mod").map((i) => Number(i.v));
    expect(mod.length).toBeGreaterThanOrEqual(3);
    expect(new Set(mod.slice(1).map((v, i) => v - mod[i]!))).toEqual(new Set([3]));
    // changed on our side only: the same monitored item, now scaled
    const steadyByT = new Map(h.items("steady").map((i) => [i.t, Number(i.v)]));
    const local = items("local");
    expect(local.length).toBeGreaterThan(5);
    for (const i of local) if (steadyByT.has(i.t)) expect(i.v).toBe(2 * steadyByT.get(i.t)!);
    // recreated at a new address
    expect(h.items("move").at(-1)!.v).toBe("KS-4200-000815");
    // removed: nothing after the change took effect
    expect(h.items("gone", applied)).toEqual([]);
    expect(h.items("gone").length).toBeGreaterThan(0);
    expect(checkSeries(items("fresh")).gaps).toEqual([]);
    expect(checkSeries(items("added")).gaps).toEqual([]);

    // Second change: a group and a data point go; nothing else moves.
    const third: GroupSpec[] = [next[0]!, { ...next[1]!, nodes: next[1]!.nodes.filter((n) => n.key !== "added") }];
    expect(await h.set.apply(third)).toEqual({ added: [], removed: ["added", "fresh"], changed: [] });
    expect(h.set.subscriptionId("fresh")).toBeUndefined();
    expect(await serverItems(editId)).toBe(3);
    expect(h.set.itemCount).toBe(4);
    expect(await h.set.apply(third)).toEqual({ added: [], removed: [], changed: [] });
    await sleep(300);

    // The untouched item flowed through both changes: every step, once, in order.
    const series = checkSeries(h.items("steady"));
    expect(series.gaps).toEqual([]);
    expect(series.duplicates).toBe(0);
    expect(series.count).toBe(series.last - series.first + 1);
    expect(series.count).toBeGreaterThan(20);
    expect(h.lines.filter((l) => l.level >= 50)).toEqual([]);
  });

  it("an address that did not resolve is tried again when the mapping changes it", async () => {
    h = await subscribe(bench, [{ name: "g", publishingInterval: 100, nodes: [point("steady", loadNodeId(0)), { key: "late", browsePath: "/<nsu=urn:kerf:simulator>Load/Nope", samplingInterval: 0, queueSize: 10, discardOldest: true }] }]);
    expect(h.set.itemCount).toBe(1);
    expect(h.lines.filter((l) => l.point === "late")).toHaveLength(1);
    const result = await h.set.apply([
      { name: "g", publishingInterval: 100, nodes: [point("steady", loadNodeId(0)), { key: "late", browsePath: "/<nsu=urn:kerf:simulator>Load/<nsu=urn:kerf:simulator>Counter&.00001", samplingInterval: 0, queueSize: 10, discardOldest: true }] },
    ]);
    expect(result.changed).toEqual(["late"]);
    await waitFor("values of the fixed path", () => h!.items("late").length >= 3, 5_000);
    expect(h.set.itemCount).toBe(2);
  });

  it("asks for a higher priority for a group with more values per second, or for the mapping's, and changes it live", async () => {
    const many = { name: "many", publishingInterval: 100, nodes: [0, 1, 2, 3].map((i) => point(`m${i}`, loadNodeId(i))) };
    const few = { name: "few", publishingInterval: 1000, nodes: [point("f", loadNodeId(4))] };
    h = await subscribe(bench, [few, many]);
    let server = await serverPriorities();
    const [manyId, fewId] = [h.set.subscriptionId("many")!, h.set.subscriptionId("few")!];
    // 40 values/s against 1 value/s
    expect(server.get(manyId)).toBe(16);
    expect(server.get(fewId)).toBe(3);

    const result = await h.set.apply([{ ...few, priority: 200 }, many]);
    expect(result).toEqual({ added: [], removed: [], changed: [] });
    server = await serverPriorities();
    expect(server.get(h.set.subscriptionId("few")!)).toBe(200);
    expect(h.set.subscriptionId("few")).toBe(fewId);
  });
});
