import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { loadNodeId, SIM_NODES } from "../../src/simulator/nodes.ts";
import { checkSeries, point, sleep, startBench, subscribe, waitFor, type Bench, type Harness } from "./helpers.ts";

// Load counters step +1 every 50 ms; sampling interval 0 gets every step.
const PERIOD_MS = 50;
const MACHINERY = "http://opcfoundation.org/UA/Machinery/";
const WW = "http://opcfoundation.org/UA/Woodworking/";
const SIM = "urn:kerf:simulator";
const FEED_RUNS = `nsu=${SIM};s=Machine-State-Machine-Flags-FeedRuns`;

let bench: Bench;
let h: Harness | undefined;
beforeAll(async () => {
  bench = await startBench({ load: { count: 4, periodMs: PERIOD_MS } });
});
afterEach(async () => {
  await h?.dispose();
  h = undefined;
});
afterAll(async () => {
  await bench?.stop();
});

const diffs = (values: number[]) => values.slice(1).map((v, i) => v - values[i]!);

describe("mapping features against the simulator", () => {
  it("an absolute deadband suppresses small changes; a percent one without EURange is refused with a clear line", async () => {
    h = await subscribe(bench, [
      {
        name: "g",
        publishingInterval: 100,
        nodes: [
          point("plain", loadNodeId(0)),
          point("deadband", loadNodeId(0), { deadband: { type: "absolute", value: 2.5 } }),
          point("percent.noEURange", loadNodeId(1), { deadband: { type: "percent", value: 10 } }),
          // the simulator's spindle speed is an AnalogItem with EURange 0..24000
          point("percent.spindle", SIM_NODES.spindleSpeed, { samplingInterval: 50, deadband: { type: "percent", value: 1 } }),
        ],
      },
    ]);
    await waitFor("10 deadband values", () => h!.items("deadband").length >= 10, 10_000);
    const plain = h.items("plain").map((i) => Number(i.v));
    const filtered = h.items("deadband").map((i) => Number(i.v));
    expect(new Set(diffs(plain))).toEqual(new Set([1]));
    // |change| must exceed 2.5: every third step of the counter gets through
    expect(new Set(diffs(filtered))).toEqual(new Set([3]));
    expect(h.set.itemCount).toBe(3);
    const refused = h.lines.filter((l) => l.point === "percent.noEURange");
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatchObject({ level: 50, status: "BadMonitoredItemFilterUnsupported" });
    expect(refused[0]!.msg).toMatch(/percent deadband needs the node's EURange/);
    expect(h.items("percent.noEURange")).toEqual([]);
  });

  it("dataChangeTrigger: status ignores value changes, statusValueTimestamp reports a repeated value", async () => {
    h = await subscribe(bench, [
      {
        name: "g",
        publishingInterval: 100,
        nodes: [
          point("status", loadNodeId(1), { dataChangeTrigger: "status" }),
          point("value", loadNodeId(1)),
          // FeedRuns is written every 100 ms simulator tick but changes value only between work phases
          point("feed.svt", FEED_RUNS, { samplingInterval: 50, dataChangeTrigger: "statusValueTimestamp" }),
          point("feed.sv", FEED_RUNS, { samplingInterval: 50 }),
        ],
      },
    ]);
    await sleep(1500);
    expect(h.items("value").length).toBeGreaterThan(15);
    expect(h.items("status")).toHaveLength(1);
    const svt = h.items("feed.svt");
    expect(svt.length).toBeGreaterThanOrEqual(8);
    expect(new Set(svt.map((i) => i.v)).size).toBeLessThanOrEqual(2);
    expect(new Set(svt.map((i) => i.t)).size).toBe(svt.length);
    expect(h.items("feed.sv").length).toBeLessThanOrEqual(2);
  });

  it("heartbeat resends an unchanged value, marked hb and stamped with its own time", async () => {
    h = await subscribe(bench, [{ name: "g", publishingInterval: 100, nodes: [point("serial", SIM_NODES.serialNumber, { samplingInterval: 100, heartbeatSeconds: 1, unit: "none" })] }]);
    await waitFor("two heartbeats", () => h!.items("serial").filter((i) => i.hb).length >= 2, 5_000, 50);
    const [first, ...beats] = h.items("serial");
    expect(first).toEqual({ key: "serial", v: "KS-4200-000815", q: 0, t: first!.t, u: "none" });
    for (const b of beats) expect(b).toMatchObject({ key: "serial", v: "KS-4200-000815", q: 0, u: "none", hb: true });
    const times = [first!, ...beats].map((i) => Date.parse(i.t));
    const gaps = diffs(times.slice(1));
    for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(900);
    // the first heartbeat comes a period after the value was received (not its source time)
    expect(Date.parse(beats[0]!.t)).toBeGreaterThan(times[0]!);
  });

  it("skipFirst drops the initial value but not the changes", async () => {
    h = await subscribe(bench, [
      {
        name: "g",
        publishingInterval: 100,
        nodes: [
          point("serial", SIM_NODES.serialNumber, { samplingInterval: 100 }),
          point("serial.skip", SIM_NODES.serialNumber, { samplingInterval: 100, skipFirst: true }),
          point("counter", loadNodeId(2)),
          point("counter.skip", loadNodeId(2), { skipFirst: true }),
        ],
      },
    ]);
    await waitFor("counter values", () => h!.items("counter.skip").length >= 5, 5_000);
    await sleep(300);
    expect(h.items("serial")).toHaveLength(1);
    expect(h.items("serial.skip")).toHaveLength(0);
    const all = h.items("counter").map((i) => Number(i.v));
    const skipped = h.items("counter.skip").map((i) => Number(i.v));
    expect(skipped[0]).toBeGreaterThan(all[0]!);
    expect(checkSeries(h.items("counter.skip")).gaps).toEqual([]);
  });

  it("indexRange delivers part of an array; scale and offset convert numbers and leave the rest alone", async () => {
    h = await subscribe(bench, [
      {
        name: "g",
        publishingInterval: 100,
        nodes: [
          // Server_NamespaceArray: the standard namespace comes first
          point("namespaces", "i=2255", { samplingInterval: 1000, indexRange: "0:1" }),
          point("counter", loadNodeId(3)),
          point("counter.scaled", loadNodeId(3), { scale: 10, offset: 5, unit: "mm" }),
          point("serial.scaled", SIM_NODES.serialNumber, { samplingInterval: 100, scale: 2 }),
        ],
      },
    ]);
    await waitFor("scaled values", () => h!.items("counter.scaled").length >= 5 && h!.items("namespaces").length > 0, 5_000);
    const ns = h.items("namespaces")[0]!.v as string[];
    expect(ns).toHaveLength(2);
    expect(ns[0]).toBe("http://opcfoundation.org/UA/");
    const byT = new Map(h.items("counter").map((i) => [i.t, Number(i.v)]));
    const scaled = h.items("counter.scaled");
    expect(scaled.every((i) => i.u === "mm")).toBe(true);
    let compared = 0;
    for (const s of scaled) {
      const raw = byT.get(s.t);
      if (raw === undefined) continue;
      expect(s.v).toBe(raw * 10 + 5);
      compared++;
    }
    expect(compared).toBeGreaterThanOrEqual(3);
    expect(h.items("serial.scaled")[0]!.v).toBe("KS-4200-000815");
    await sleep(300);
    expect(h.lines.filter((l) => l.point === "serial.scaled" && l.level === 40)).toHaveLength(1);
  });

  it("browse paths resolve (nsu= elements, escapes, start node); one that does not gets one error line, the rest flow", async () => {
    const currentState = `/<nsu=${MACHINERY}>Machines/<nsu=${SIM}>Machine/<nsu=${WW}>State/<nsu=${WW}>Machine/<nsu=${WW}>Overview/<nsu=${WW}>CurrentState`;
    h = await subscribe(bench, [
      {
        name: "g",
        publishingInterval: 100,
        nodes: [
          { key: "state.byPath", browsePath: currentState, samplingInterval: 100, queueSize: 10, discardOldest: true },
          point("state.byId", SIM_NODES.currentState, { samplingInterval: 100 }),
          // the counter's browse name "Counter.00000" needs its '.' escaped
          { key: "counter.byPath", browsePath: `/<nsu=${SIM}>Counter&.00000`, startNode: SIM_NODES.loadFolder, samplingInterval: 0, queueSize: 100, discardOldest: true },
          { key: "missing", browsePath: `/<nsu=${SIM}>NoSuchNode/Value`, samplingInterval: 0, queueSize: 10, discardOldest: true },
          { key: "unknown.ns", browsePath: "/<nsu=urn:nobody>Thing", samplingInterval: 0, queueSize: 10, discardOldest: true },
        ],
      },
    ]);
    await waitFor("values by path", () => h!.items("state.byPath").length > 0 && h!.items("counter.byPath").length >= 3, 5_000);
    expect(h.items("state.byPath")[0]!.v).toEqual(h.items("state.byId")[0]!.v);
    expect(checkSeries(h.items("counter.byPath")).gaps).toEqual([]);
    const missing = h.lines.filter((l) => l.point === "missing");
    expect(missing).toHaveLength(1);
    expect(missing[0]).toMatchObject({ level: 50, browsePath: `/<nsu=${SIM}>NoSuchNode/Value`, startNode: "i=85", status: "BadNoMatch" });
    const unknown = h.lines.filter((l) => l.point === "unknown.ns");
    expect(unknown).toHaveLength(1);
    expect(unknown[0]!.msg).toMatch(/the server has no namespace 'urn:nobody'/);
    expect(h.set.itemCount).toBe(3);
  });
});
