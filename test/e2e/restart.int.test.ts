/**
 * After SIGKILL and a restart, the connector subscribes anew and the server repeats the current
 * value of every node; a value that has not changed since it was delivered must not reach the
 * cloud again. Slow nodes (serial number, state, mode, program) do not change between the runs;
 * the load counters change every 100 ms and show that nothing is lost.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Demo } from "../../src/demo/setup.ts";
import { checkSeries, DEMO_MACHINE, loadKey, waitFor } from "../helpers/env.ts";
import { demoForKerfRun, killHard, startConnector, stopLikeAContainer, type Connector } from "./connector.ts";

const COUNTERS = 10;
const SLOW_KEYS = ["serial", "state", "mode", "program.name"];

describe("restart after SIGKILL", () => {
  let env: Awaited<ReturnType<typeof demoForKerfRun>>;
  let demo: Demo;
  const connectors: Connector[] = [];

  beforeAll(async () => {
    env = await demoForKerfRun({ load: { count: COUNTERS, periodMs: 100 } });
    demo = env.demo;
  });
  afterAll(async () => {
    for (const c of connectors) await killHard(c);
    await env?.stop();
  });

  const counter = () => Number(demo.devcloud.store.latest(DEMO_MACHINE)[loadKey(0)]?.v ?? -1);
  const onlines = () => demo.devcloud.store.events(DEMO_MACHINE).filter((m) => m.kind === "status" && m.state === "online").length;

  /** A new `kerf run` that has delivered `runFor` counter values of its own. */
  async function restarted(runFor: number): Promise<Connector> {
    const c = startConnector(demo.configFile, demo.connectorStateDir);
    connectors.push(c);
    const before = onlines();
    const previous = counter();
    await waitFor("the connector online and delivering", () => onlines() > before && counter() > previous, 60_000);
    const from = counter();
    await waitFor(`${runFor} more counter values`, () => counter() >= from + runFor, 60_000);
    return c;
  }

  it("resends no unchanged value and loses none", { timeout: 180_000 }, async () => {
    const store = demo.devcloud.store;
    // Killed twice: soon after the start, and after a run long enough for the buffer's periodic
    // snapshot of what was delivered.
    for (const runFor of [15, 80]) {
      const c = await restarted(runFor);
      await killHard(c);
    }
    const last = await restarted(20);
    expect(await stopLikeAContainer(last)).toMatchObject({ code: 0, killed: false });

    const latest = store.latest(DEMO_MACHINE);
    for (const key of SLOW_KEYS) expect(latest[key], key).toBeDefined();
    const repeated = Object.keys(latest).filter((key) => {
      const items = store.items(DEMO_MACHINE, key);
      return new Set(items.map((i) => `${i.t} ${JSON.stringify(i.v)}`)).size !== items.length;
    });
    expect(repeated, "keys with an item the cloud received twice").toEqual([]);
    expect(store.counts().duplicateItems).toBe(0);
    for (const key of Object.keys(latest)) {
      const items = store.items(DEMO_MACHINE, key);
      expect(new Set(items.map((i) => i.t)).size, `${key}: an item repeated with the same source time`).toBe(items.length);
    }
    for (let i = 0; i < COUNTERS; i++) {
      const s = checkSeries(store.items(DEMO_MACHINE, loadKey(i)));
      expect(s.duplicates, loadKey(i)).toBe(0);
      // The only values missing are those the server published while no connector ran: one gap per kill.
      expect(s.gaps.length, loadKey(i)).toBeLessThanOrEqual(2);
    }
  });
});
