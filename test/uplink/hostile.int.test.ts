/**
 * The uplink against a cloud that misbehaves part of the time (the devcloud's seeded hostile
 * mode), over real mTLS with the real durable buffer: some failed requests must not slow the
 * others down, a cloud that is down gets one request at a time, a response that drips does not
 * hold up the rest, and through all of it every item arrives exactly once.
 */
import path from "node:path";
import { afterEach, expect, it } from "vitest";
import { createHostile, type Hostile } from "../../src/devcloud/hostile.ts";
import { startDevCloud, type DevCloud } from "../../src/devcloud/server.ts";
import { silentLogger } from "../../src/log.ts";
import type { SenderOptions } from "../../src/uplink/sender.ts";
import { waitFor } from "../helpers/env.ts";
import { clientTransport, countStored, newSender, notExactlyOnce, numberedItems, openBuffer, runCleanups, tempDir, type Cleanups } from "./helpers.ts";

const cleanup: Cleanups = [];
afterEach(() => runCleanups(cleanup));

async function rig(hostile?: Hostile) {
  const { dir, remove } = await tempDir("kerf-hostile-");
  cleanup.push(remove);
  const cloud: DevCloud = await startDevCloud({ dir: path.join(dir, "cloud"), logger: silentLogger(), requireTokens: false, faults: hostile ? { hostile } : {} });
  cleanup.push(() => cloud.stop());
  const buffer = openBuffer(dir, 256 * 1024 * 1024, cleanup);
  const { transport } = await clientTransport(cloud.ca, [cloud.pin], cleanup);
  // The product's timeouts: a drip must be cut short by the sender's own deadline, not by a test setting.
  const sender = (options: Partial<SenderOptions> = {}) =>
    newSender({ store: buffer, transport, url: cloud.url, concurrency: 4, requestTimeoutMs: 30_000, pollIntervalMs: 50, ...options }, cleanup);
  return { cloud, buffer, sender, items: numberedItems(), stored: countStored(cloud.store) };
}

it("a quarter of the requests fail: the sender keeps up with a steady producer, and every item arrives exactly once", { timeout: 180_000 }, async () => {
  const hostile = createHostile({ rate: 0.25, seed: 42 });
  const { cloud, buffer, sender, items, stored } = await rig(hostile);
  const backlog = 60;
  for (let i = 0; i < backlog; i++) buffer.append(items.batch(200));
  const s = sender();
  s.start();
  // 2,000 items/s in batches of 200, while the backlog is worked off.
  let produced = 0;
  const producer = setInterval(() => {
    buffer.append(items.batch(200));
    produced++;
    s.wake();
  }, 100);
  cleanup.push(() => clearInterval(producer));

  // Keeping up: with the producer still running, the backlog comes down to a quarter of what it
  // was, and stays bounded while the producer adds as many batches again.
  await waitFor("the backlog worked off while the producer runs", () => buffer.stats().batches <= backlog / 4, 120_000);
  const caughtUpAt = produced;
  let worst = 0;
  await waitFor("as many batches again produced", () => {
    worst = Math.max(worst, buffer.stats().batches);
    return produced >= caughtUpAt + backlog;
  }, 120_000, 20);
  clearInterval(producer);
  expect(worst).toBeLessThanOrEqual(backlog / 2);
  expect(await s.drain(120_000)).toBe(true);

  // Every kind of fault happened, while more than one request was in flight.
  for (const [kind, n] of Object.entries(hostile.counts)) expect(n, kind).toBeGreaterThan(0);
  expect(cloud.inFlight.peak).toBeGreaterThan(1);
  // Nothing lost, nothing stored twice, nothing dead-lettered.
  expect(notExactlyOnce(stored, items.last)).toEqual([]);
  expect(cloud.store.counts()).toMatchObject({ items: items.last, duplicateItems: 0 });
  expect(cloud.store.counts().duplicateBatches).toBeGreaterThan(0); // the lost answers and drips, resent and counted once
  expect(buffer.stats()).toMatchObject({ items: 0, droppedItems: 0, ackedItems: items.last });
});

it("a cloud that is down gets one request at a time until it is back; then everything arrives once", { timeout: 120_000 }, async () => {
  const hostile = createHostile({ rate: 1, seed: 7, mix: { reset: 1, lostAnswer: 1 } });
  const { cloud, buffer, sender, items, stored } = await rig(hostile);
  for (let i = 0; i < 12; i++) buffer.append(items.batch(100));
  const s = sender({ retry: { initialDelayMs: 50, maxDelayMs: 400 } });
  s.start();
  await waitFor("ten refused requests", () => cloud.store.counts().requests >= 10, 60_000);
  expect(cloud.inFlight.peak).toBe(1);
  expect(s.health().consecutiveFailures).toBeGreaterThanOrEqual(9);
  expect(buffer.stats()).toMatchObject({ items: 1200, ackedItems: 0, droppedItems: 0 });
  expect(hostile.counts.lostAnswer).toBeGreaterThan(0);

  cloud.faults.hostile = undefined;
  expect(await s.drain(60_000)).toBe(true);
  expect(notExactlyOnce(stored, items.last)).toEqual([]);
  expect(cloud.store.counts()).toMatchObject({ items: 1200, duplicateItems: 0 });
  expect(cloud.store.counts().duplicateBatches).toBeGreaterThan(0);
  expect(s.health().consecutiveFailures).toBe(0);
});

for (const concurrency of [1, 4]) it(`a response that drips does not hold up the others, also right after a failure (concurrency ${concurrency})`, { timeout: 120_000 }, async () => {
  const { cloud, buffer, sender, items, stored } = await rig();
  const dripper = createHostile({ rate: 1, seed: 1, mix: { drip: 1 } });
  let arrivals = 0;
  let duringDrip = 0;
  let failNext = false;
  let dripNext = false;
  cloud.faults.status = () => {
    arrivals++;
    if (dripper.dripping > 0) duringDrip++;
    // The hostile mode answers right after this hook: drip exactly one chosen request.
    cloud.faults.hostile = dripNext ? dripper : undefined;
    dripNext = false;
    if (!failNext) return undefined;
    failNext = false;
    return 503;
  };
  // one batch per request (no merging), so that "the others" are many requests
  const s = sender({ concurrency, maxItemsPerRequest: 100 });
  s.start();
  // A few successes first, so the sender knows how long this cloud takes.
  for (let i = 0; i < 3; i++) buffer.append(items.batch(100));
  s.wake();
  expect(await s.drain(30_000)).toBe(true);

  // One failure with nothing else in flight; then the next request drips while 30 batches wait.
  failNext = true;
  buffer.append(items.batch(100));
  s.wake();
  await waitFor("the failure", () => s.stats().retries >= 1, 30_000, 5);
  dripNext = true;
  for (let i = 0; i < 30; i++) buffer.append(items.batch(100));
  s.wake();
  expect(await s.drain(90_000)).toBe(true);

  expect(dripper.counts.drip).toBe(1);
  expect(duringDrip).toBeGreaterThanOrEqual(2);
  expect(arrivals).toBeGreaterThan(34);
  expect(notExactlyOnce(stored, items.last)).toEqual([]);
  expect(cloud.store.counts()).toMatchObject({ items: items.last, duplicateItems: 0 });
});
