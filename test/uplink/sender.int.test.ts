/**
 * The uplink loop against the real devcloud and the real durable buffer: each answer of the
 * retry table, end to end, with no data lost and none stored twice.
 */
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { DurableBuffer } from "../../src/buffer/buffer.ts";
import { startDevCloud, type DevCloud, type DevCloudOptions } from "../../src/devcloud/server.ts";
import { silentLogger } from "../../src/log.ts";
import type { Message } from "../../src/message.ts";
import { Transport } from "../../src/uplink/transport.ts";
import type { AckResponse, Sender, SenderOptions } from "../../src/uplink/sender.ts";
import { spkiPin } from "../../src/certs/pins.ts";
import { clientIdentity, clientTransport, newSender, openBuffer, runCleanups, startTlsServer, tempDir } from "./helpers.ts";

let dir: string;
let removeDir: () => Promise<void>;
let cloud: DevCloud;
let buffer: DurableBuffer;
const cleanup: Array<() => Promise<unknown> | void> = [];

async function setup(cloudOptions: Partial<DevCloudOptions> = {}) {
  ({ dir, remove: removeDir } = await tempDir("kerf-sender-"));
  cloud = await startDevCloud({ dir: path.join(dir, "cloud"), logger: silentLogger(), requireTokens: false, ...cloudOptions });
  cleanup.push(() => cloud.stop());
  buffer = openBuffer(dir, 64 * 1024 * 1024, cleanup);
}

async function sender(options: Partial<SenderOptions> & { pins?: string[] } = {}): Promise<Sender> {
  const { transport } = await clientTransport(cloud.ca, options.pins ?? [cloud.pin], cleanup);
  return newSender(
    { store: buffer, transport, url: cloud.url, concurrency: 2, requestTimeoutMs: 5000, retry: { initialDelayMs: 20, maxDelayMs: 100 }, pollIntervalMs: 50, ...options },
    cleanup,
  );
}

beforeEach(() => {
  cleanup.length = 0;
});
afterEach(async () => {
  await runCleanups(cleanup);
  await removeDir();
});

let clock = 0;
function batch(machine: string, key: string, n: number, size = 0): Message[] {
  const items = Array.from({ length: n }, () => {
    clock++;
    return { key, v: size ? "x".repeat(size) + clock : clock, q: 0, t: new Date(Date.UTC(2026, 0, 1) + clock).toISOString() };
  });
  return [{ kind: "data", machine, items }];
}

async function until(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("delivery", () => {
  it("sends what is stored once, merged, with the idempotency key <instance>:<epoch>:<id>, and acks it after the 200", async () => {
    await setup();
    const ids = [buffer.append(batch("m1", "a", 3)), buffer.append(batch("m1", "b", 2)), buffer.append(batch("m2", "a", 1))];
    const keys: string[] = [];
    cloud.store.onBatch((b) => keys.push(b.idempotencyKey));
    const s = await sender();
    const acked: Array<[number, AckResponse]> = [];
    s.on("acked", (b, r) => acked.push([b.id, r]));
    s.start();
    expect(await s.drain(10_000)).toBe(true);
    // what waited together left merged, under the newest batch's id
    expect(acked.map(([id]) => id)).toEqual([ids[2]]);
    expect(keys).toEqual([`line-1:${buffer.epoch}:${ids[2]}`]);
    expect(acked.every(([, r]) => r.status === 200 && r.duplicate === false)).toBe(true);
    expect(cloud.store.counts()).toMatchObject({ batches: 1, items: 6, duplicateItems: 0 });
    expect(buffer.stats()).toMatchObject({ items: 0, ackedItems: 6, droppedItems: 0 });
    expect(s.stats()).toMatchObject({ sentItems: 6, ackedItems: 6, retries: 0 });
    expect(s.health()).toMatchObject({ consecutiveFailures: 0, lastError: null });
    expect(s.health().lastAckAt).toBeGreaterThan(0);
  });

  it("a backlog leaves in few large requests, within the request limits, each item once", async () => {
    await setup();
    for (let i = 0; i < 60; i++) buffer.append(batch("m1", "k", 100));
    const requests: number[] = [];
    cloud.store.onBatch((b) => requests.push(b.messages.reduce((n, m) => n + (m.kind === "data" ? m.items.length : 1), 0)));
    const s = await sender({ maxItemsPerRequest: 2000 });
    s.start();
    expect(await s.drain(20_000)).toBe(true);
    expect(requests.length).toBeLessThanOrEqual(6);
    expect(Math.max(...requests)).toBeLessThanOrEqual(2000);
    expect(cloud.store.counts()).toMatchObject({ items: 6000, duplicateItems: 0 });
    expect(buffer.stats()).toMatchObject({ items: 0, ackedItems: 6000 });
  });

  it("a batch that went into a request is never merged: its retry carries the same items under the same key", async () => {
    await setup();
    const first = buffer.append(batch("m1", "k", 10));
    const bodies = new Map<string, number[][]>();
    let fail = true;
    cloud.faults.status = (req, env) => {
      const key = String(req.headers["idempotency-key"]);
      bodies.set(key, [...(bodies.get(key) ?? []), env.messages.flatMap((m) => (m.kind === "data" ? m.items.map((i) => Number(i.v)) : []))]);
      return fail ? 503 : undefined;
    };
    const s = await sender();
    s.start();
    await until(() => s.stats().retries >= 1);
    await s.stop();
    // a backlog builds behind the batch whose answer never came
    for (let i = 0; i < 5; i++) buffer.append(batch("m1", "k", 10));
    fail = false;
    const again = await sender();
    again.start();
    expect(await again.drain(20_000)).toBe(true);
    const sent = bodies.get(`line-1:${buffer.epoch}:${first}`)!;
    expect(sent.length).toBeGreaterThanOrEqual(2);
    expect(new Set(sent.map((v) => v.join()))).toHaveProperty("size", 1);
    expect(cloud.store.counts()).toMatchObject({ items: 60, duplicateItems: 0 });
  });

  it("wake() sends a new batch without waiting for the poll", async () => {
    await setup();
    // The poll would come after an hour: only wake() can send it within the wait.
    const s = await sender({ pollIntervalMs: 3_600_000 });
    s.start();
    await new Promise((r) => setTimeout(r, 50));
    buffer.append(batch("m1", "a", 1));
    s.wake();
    await until(() => cloud.store.counts().items === 1, 30_000);
  });
});

describe("the retry table, end to end", () => {
  it("503 twice, then success: delivered once", async () => {
    await setup();
    cloud.faults.failNext = 2;
    buffer.append(batch("m1", "a", 5));
    const s = await sender();
    s.start();
    expect(await s.drain(10_000)).toBe(true);
    expect(cloud.store.counts()).toMatchObject({ requests: 3, batches: 1, items: 5, duplicateItems: 0 });
    expect(s.stats()).toMatchObject({ retries: 2, ackedItems: 5 });
    expect(s.health().consecutiveFailures).toBe(0);
    expect(s.health().lastError).toMatch(/503/);
  });

  it("429 with Retry-After: 1 waits that long before the next request", async () => {
    await setup();
    const seen: number[] = [];
    cloud.faults.status = () => {
      seen.push(Date.now());
      return seen.length === 1 ? { status: 429, headers: { "retry-after": "1" } } : undefined;
    };
    buffer.append(batch("m1", "a", 1));
    const s = await sender();
    s.start();
    expect(await s.drain(10_000)).toBe(true);
    expect(seen).toHaveLength(2);
    expect(seen[1]! - seen[0]!).toBeGreaterThanOrEqual(950);
    expect(cloud.store.counts().items).toBe(1);
  });

  it("413 splits until each part fits; every item arrives once; a single item too large is dead-lettered", async () => {
    await setup({ maxBodyBytes: 4096 });
    buffer.append(batch("m1", "a", 200));
    buffer.append([...batch("m1", "b", 3), ...batch("m2", "c", 3)]);
    buffer.append(batch("m1", "huge", 1, 8000));
    const s = await sender();
    const dropped: string[] = [];
    s.on("dropped", (_b, reason) => dropped.push(reason));
    s.start();
    expect(await s.drain(20_000)).toBe(true);
    expect(cloud.store.items("m1", "a")).toHaveLength(200);
    expect(cloud.store.items("m1", "b")).toHaveLength(3);
    expect(cloud.store.items("m2", "c")).toHaveLength(3);
    expect(cloud.store.items("m1", "huge")).toHaveLength(0);
    expect(cloud.store.counts()).toMatchObject({ items: 206, duplicateItems: 0 });
    expect(s.stats().splits).toBeGreaterThan(0);
    expect(s.stats().tooLargeItems).toBe(1);
    expect(dropped).toEqual(["too_large"]);
    expect(buffer.stats()).toMatchObject({ items: 0, ackedItems: 206, dropped: { too_large: 1, rejected: 0, buffer_full: 0 } });
  });

  it("400 dead-letters the batch with the cloud's reason, counts it, and the queue moves on", async () => {
    await setup();
    buffer.append(batch("m1", "bad", 4));
    buffer.append(batch("m1", "good", 2));
    const bad = (env: { messages: { kind: string; items?: { key: string }[] }[] }) => env.messages.some((m) => m.items?.some((i) => i.key === "bad"));
    cloud.faults.status = (_req, env) => (bad(env) ? { status: 400, body: JSON.stringify({ error: "unit unknown" }) } : undefined);
    const s = await sender();
    const dropped: string[] = [];
    s.on("dropped", (b, reason, detail) => dropped.push(`${b.id} ${reason} ${detail}`));
    s.start();
    expect(await s.drain(10_000)).toBe(true);
    // the two went merged; the 400 took them apart, and only the poisoned one was dead-lettered
    expect(dropped).toEqual([expect.stringMatching(/^\d+ rejected 400 \{"error":"unit unknown"\}$/)]);
    expect(s.stats()).toMatchObject({ rejectedItems: 4, ackedItems: 2, retries: 0 });
    expect(buffer.stats().dropped.rejected).toBe(4);
    expect(cloud.store.items("m1", "good")).toHaveLength(2);
  });

  it("an answer lost after the cloud stored the batch: the retry is acknowledged as a duplicate and stored once", async () => {
    await setup();
    let lost = false;
    cloud.faults.status = (req, env) => {
      if (lost) return undefined;
      lost = true;
      // The cloud stores the batch, but the 200 never reaches the connector.
      cloud.store.ingest(env.connector, env.batch, String(req.headers["idempotency-key"]), env.messages);
      return 503;
    };
    buffer.append(batch("m1", "a", 3));
    const s = await sender();
    const responses: AckResponse[] = [];
    s.on("acked", (_b, r) => responses.push(r));
    s.start();
    expect(await s.drain(10_000)).toBe(true);
    expect(responses).toEqual([{ status: 200, accepted: 3, duplicate: true }]);
    expect(cloud.store.counts()).toMatchObject({ batches: 1, duplicateBatches: 1, items: 3, duplicateItems: 0 });
    expect(cloud.store.items("m1", "a")).toHaveLength(3);
  });

  it("401 is not a reason to lose data: the batch stays buffered and the error is reported", async () => {
    await setup();
    cloud.faults.status = () => 401;
    buffer.append(batch("m1", "a", 2));
    const s = await sender();
    s.start();
    await until(() => s.stats().retries >= 2);
    await s.stop();
    expect(buffer.stats()).toMatchObject({ items: 2, droppedItems: 0 });
    expect(s.health().lastError).toMatch(/401/);
  });
});

describe("failures of the connection", () => {
  it("a cloud outage: all requests back off together, nothing is lost, and delivery resumes on the same port", async () => {
    await setup();
    const s = await sender({ concurrency: 4, retry: { initialDelayMs: 50, maxDelayMs: 200 } });
    const port = cloud.port;
    await cloud.stop();
    for (let i = 0; i < 8; i++) buffer.append(batch("m1", "a", 10));
    s.start();
    await new Promise((r) => setTimeout(r, 1000));
    const during = s.stats();
    // One probe at a time with a shared backoff capped at 200 ms (mean 100 ms): about ten
    // attempts in a second. Without the shared backoff and the single probe, four loops would spin.
    expect(during.retries).toBeGreaterThan(2);
    expect(during.retries).toBeLessThan(25);
    expect(s.health().consecutiveFailures).toBeGreaterThan(0);
    expect(s.health().lastError).toMatch(/UPLINK_NETWORK|ECONNREFUSED/);
    expect(buffer.stats().items).toBe(80);

    cloud = await startDevCloud({ dir: path.join(dir, "cloud"), port, logger: silentLogger(), requireTokens: false });
    cleanup.push(() => cloud.stop());
    expect(await s.drain(10_000)).toBe(true);
    expect(cloud.store.counts()).toMatchObject({ items: 80, duplicateItems: 0 });
    expect(s.health().consecutiveFailures).toBe(0);
  });

  it("a pin mismatch: nothing reaches the cloud, the data stays buffered, the error names the pins", async () => {
    await setup();
    const wrongPin = "sha256/" + Buffer.alloc(32, 9).toString("base64");
    buffer.append(batch("m1", "a", 2));
    const s = await sender({ pins: [wrongPin] });
    s.start();
    await until(() => s.stats().retries >= 2);
    await s.stop();
    expect(cloud.store.counts().requests).toBe(0);
    expect(buffer.stats().items).toBe(2);
    expect(s.health().lastError).toContain("UPLINK_PIN_MISMATCH");
    expect(s.health().lastError).toContain(wrongPin);
    expect(s.health().lastError).toContain(cloud.pin);
  });

  it("a client certificate the cloud refuses is reported as UPLINK_NO_CLIENT_CERT", async () => {
    await setup();
    const { createDevCa } = await import("../../src/certs/devca.ts");
    const stranger = await clientIdentity(await createDevCa(path.join(dir, "stranger-ca")), "line-1");
    const transport = new Transport({ ...stranger, caPem: cloud.ca.certPem, pins: [cloud.pin], logger: silentLogger() });
    cleanup.push(() => transport.close());
    buffer.append(batch("m1", "a", 1));
    const s = await sender({ transport });
    s.start();
    await until(() => s.stats().retries >= 1);
    await s.stop();
    expect(s.health().lastError).toMatch(/UPLINK_NO_CLIENT_CERT: the cloud at '127\.0\.0\.1:\d+' refused our client certificate/);
    expect(buffer.stats().items).toBe(1);
  });

  it("a cloud that never answers: the request times out, is retried, and the batch stays buffered", async () => {
    await setup();
    const leaf = await cloud.ca.issueServerCert({ ips: ["127.0.0.1"] });
    const silent = await startTlsServer({ chainPem: leaf.chainPem, keyPem: leaf.keyPem, holdAll: true });
    cleanup.push(() => silent.close());
    buffer.append(batch("m1", "a", 1));
    const s = await sender({ url: `https://127.0.0.1:${silent.port}`, pins: [spkiPin(leaf.certPem)], requestTimeoutMs: 300 });
    s.start();
    await until(() => s.stats().retries >= 2);
    await s.stop();
    expect(silent.requests).toBeGreaterThanOrEqual(2);
    expect(s.health().lastError).toMatch(/UPLINK_NETWORK: the cloud at '127\.0\.0\.1:\d+' did not answer in time/);
    expect(buffer.stats().items).toBe(1);
  });

  it("stop() returns promptly during a long backoff and leaves unsent batches in the buffer", async () => {
    await setup();
    cloud.faults.failNext = 100;
    buffer.append(batch("m1", "a", 1));
    // A backoff of an hour: a stop() that waited for it would outlast the test's timeout.
    const s = await sender({ retry: { initialDelayMs: 3_600_000, maxDelayMs: 3_600_000 }, random: () => 0.99 });
    s.start();
    await until(() => s.stats().retries >= 1);
    await s.stop();
    expect(s.stats().retries).toBe(1);
    expect(buffer.stats().items).toBe(1);
  });
});

describe("batch size", () => {
  it("splits a stored batch larger than maxItemsPerRequest before sending it", async () => {
    await setup();
    buffer.append(batch("m1", "a", 25));
    const sizes: number[] = [];
    cloud.store.onBatch((b) => sizes.push(b.items));
    const s = await sender({ maxItemsPerRequest: 10 });
    s.start();
    expect(await s.drain(10_000)).toBe(true);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(10);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(25);
    expect(cloud.store.items("m1", "a")).toHaveLength(25);
  });
});
