/**
 * Values a rogue server sends that node-opcua's decoder does not take, or takes apart: they must
 * not hide the values sent beside them, and must never arrive changed and marked Good.
 */
import { Writable } from "node:stream";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { BAD_ENCODING_LIMITS_EXCEEDED } from "../../src/opcua/subscription/encode.ts";
import { MachineSession } from "../../src/opcua/session/session.ts";
import type { NodeSpec } from "../../src/opcua/types.ts";
import { loadNodeId, ROGUE_DECODING_NODES } from "../../src/simulator/nodes.ts";
import type { Item } from "../../src/message.ts";
import { checkSeries, loadKey, tempDir, waitFor } from "../helpers/env.ts";
import { endpointSpec, simulatorAndPki } from "../helpers/opcua.ts";

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const node = (key: string, id: string): NodeSpec => ({ key, node: id, samplingInterval: 0, queueSize: 100, discardOldest: true });

function capture() {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: "info" }, new Writable({ write: (chunk, _e, cb) => (lines.push(JSON.parse(String(chunk)) as Record<string, unknown>), cb()) }));
  return { logger, lines };
}

async function start(nodes: NodeSpec[], counters: number) {
  const tmp = await tempDir("kerf-decoding-");
  cleanups.push(tmp.cleanup);
  const { sim, pki } = await simulatorAndPki(tmp.dir, cleanups, { rogue: { periodMs: 100 }, load: { count: counters, periodMs: 100 } });
  const items: Item[] = [];
  const { logger, lines } = capture();
  const spec = endpointSpec(sim, { groups: [{ name: "g", publishingInterval: 100, nodes }] });
  const session = new MachineSession({ spec, pki, logger, sink: { write: (ms) => ms.forEach((m) => m.kind === "data" && items.push(...m.items)) }, backoff: { initialMs: 100, maxMs: 500 } });
  cleanups.push(() => session.stop());
  session.start();
  return { session, items, lines, of: (key: string) => items.filter((i) => i.key === key) };
}

describe("a value nested deeper than node-opcua decodes", () => {
  it("beside 100 counters in one group: the counters keep flowing, the value arrives as null with BadEncodingLimitsExceeded and is reported by key", { timeout: 90_000 }, async () => {
    const COUNTERS = 100;
    const nodes = [node("deep", ROGUE_DECODING_NODES.overNested), ...Array.from({ length: COUNTERS }, (_, i) => node(loadKey(i), loadNodeId(i)))];
    const { session, lines, of } = await start(nodes, COUNTERS);

    // The over-nested value changes with the counters, every 100 ms: without repair every
    // notification that carries it is empty, and the counters show nothing, or gaps.
    const series = () => Array.from({ length: COUNTERS }, (_, i) => checkSeries(of(loadKey(i)) as never));
    try {
      await waitFor("50 values of every counter", () => series().every((s) => s.count >= 50), 60_000);
    } finally {
      const all = series();
      const missing = all.reduce((n, s) => n + s.gaps.reduce((m, [a, b]) => m + b - a - 1, 0), 0);
      console.log(`over-nested beside ${COUNTERS} counters: ${all.reduce((n, s) => n + s.count, 0)} counter values received, ${missing} missing between them; ${of("deep").length} of the over-nested value`);
    }
    for (const [i, s] of series().entries()) expect(s.gaps, loadKey(i)).toEqual([]);
    const deep = of("deep");

    expect(deep.length).toBeGreaterThanOrEqual(10);
    for (const d of deep) expect(d).toMatchObject({ v: null, q: BAD_ENCODING_LIMITS_EXCEEDED });

    const health = session.health();
    expect(health.undecodable.g!.values).toBeGreaterThanOrEqual(deep.length);
    expect(health.undecodable.g!.messages).toBe(0);
    expect(health.notifications.lost).toBe(0);
    // logged by key, once (it is the same point every time)
    const reported = lines.filter((l) => l.point === "deep" && /cannot be decoded/.test(String(l.msg)));
    expect(reported).toHaveLength(1);
    expect(reported[0]).toMatchObject({ group: "g", status: "BadEncodingLimitsExceeded" });
    expect(String(reported[0]!.reason)).toMatch(/nesting/);
  });
});

describe("a matrix with a million dimensions", () => {
  it("arrives as null with BadEncodingLimitsExceeded, not as a one-element array marked Good", { timeout: 60_000 }, async () => {
    const { of, lines } = await start([node("matrix", ROGUE_DECODING_NODES.manyDimensions), node("counter", loadNodeId(0))], 1);
    const [matrix] = await waitFor("the matrix", () => of("matrix").length > 0 && of("matrix"), 30_000);
    expect(matrix).toMatchObject({ v: null, q: BAD_ENCODING_LIMITS_EXCEEDED });
    expect(lines.find((l) => l.point === "matrix")).toMatchObject({ limit: "depth", size: 1_048_576 });
  });
});
