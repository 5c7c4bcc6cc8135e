import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDevCloud, type DevCloud } from "../../src/devcloud/index.ts";
import { silentLogger } from "../../src/log.ts";
import { checkSeries, DEMO_MACHINE, loadKey, startEnvironment, waitFor } from "../helpers/env.ts";

const COUNTERS = 20;
const OUTAGE_MS = 30_000;

describe("uplink outage", () => {
  let env: Awaited<ReturnType<typeof startEnvironment>>;
  let restarted: DevCloud | null = null;

  beforeAll(async () => {
    env = await startEnvironment({ load: { count: COUNTERS, periodMs: 100 } });
  });
  afterAll(async () => {
    await restarted?.stop();
    await env?.stop();
  });

  it("devcloud down for 30 s: every value arrives afterwards, none twice", { timeout: 120_000 }, async () => {
    const first = env.demo.devcloud;
    await waitFor("values flowing", () => Number(first.store.latest(DEMO_MACHINE)[loadKey(0)]?.v) >= 5);
    const port = first.port;
    const authPort = first.auth.port;
    await first.stop();
    const stoppedAt = Date.now();

    // While the cloud is away the connector keeps collecting into its buffer.
    await new Promise((r) => setTimeout(r, OUTAGE_MS));
    const backlog = env.agent.buffer.stats();
    expect(backlog.items).toBeGreaterThan(COUNTERS * (OUTAGE_MS / 100) * 0.8);
    expect(env.agent.sender!.health().consecutiveFailures).toBeGreaterThan(0);

    restarted = await startDevCloud({ dir: path.join(env.dir, "devcloud"), port, authPort, logger: silentLogger() });
    const store = restarted.store;
    const target = Number(store.latest(DEMO_MACHINE)[loadKey(0)]?.v ?? 0) + (Date.now() - stoppedAt) / 100;
    await waitFor("the backlog delivered", () => env.agent.buffer.stats().items < COUNTERS * 10 && Number(store.latest(DEMO_MACHINE)[loadKey(0)]?.v) > target, 60_000);

    for (let i = 0; i < COUNTERS; i++) {
      const s = checkSeries(store.items(DEMO_MACHINE, loadKey(i)));
      expect(s.gaps, loadKey(i)).toEqual([]);
      expect(s.duplicates, loadKey(i)).toBe(0);
      expect(s.count).toBe(s.last - s.first + 1);
      expect(s.count).toBeGreaterThan(OUTAGE_MS / 100);
    }
    expect(store.counts().duplicateItems).toBe(0);
    expect(env.agent.buffer.stats().droppedItems).toBe(0);
  });
});
