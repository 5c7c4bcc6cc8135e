/** The reference cloud over real mTLS: ingest validation, idempotency, persistence and limits. */
import { connect } from "node:net";
import { gzipSync } from "node:zlib";
import { request, type Dispatcher } from "undici";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { spkiPin } from "../../src/certs/pins.ts";
import { createHostile, type FaultKind, type HostileOptions } from "../../src/devcloud/hostile.ts";
import { startDevCloud, type DevCloud } from "../../src/devcloud/server.ts";
import { silentLogger } from "../../src/log.ts";
import type { Message } from "../../src/message.ts";
import { Transport } from "../../src/uplink/transport.ts";
import { clientIdentity, tempDir } from "../uplink/helpers.ts";

let dir: string;
let removeDir: () => Promise<void>;
let cloud: DevCloud;
const cleanup: Array<() => Promise<unknown>> = [];

beforeEach(async () => {
  ({ dir, remove: removeDir } = await tempDir("kerf-devcloud-"));
  cloud = await startDevCloud({ dir, logger: silentLogger(), maxBodyBytes: 1024 * 1024, requireTokens: false });
  cleanup.push(() => cloud.stop());
});
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!().catch(() => undefined);
  await removeDir();
});

async function clientAgent(instance = "line-1"): Promise<Dispatcher> {
  const id = await clientIdentity(cloud.ca, instance);
  const agent = new Transport({ ...id, caPem: cloud.ca.certPem, pins: [cloud.pin], logger: silentLogger() });
  cleanup.push(() => agent.close());
  return agent;
}

function data(machine: string, key: string, values: Array<[number, string]>): Message {
  return { kind: "data", machine, items: values.map(([v, t]) => ({ key, v, q: 0, t })) };
}

async function ingest(agent: Dispatcher, body: unknown, headers: Record<string, string> = {}, raw?: Buffer) {
  const envelope = body as { connector?: string; batch?: number };
  const res = await request(`${cloud.url}/v1/ingest`, {
    dispatcher: agent,
    method: "POST",
    headers: {
      "content-type": "application/json",
      "content-encoding": "gzip",
      "idempotency-key": `${envelope.connector}:epoch-1:${envelope.batch}`,
      ...headers,
    },
    body: raw ?? gzipSync(JSON.stringify(body)),
  });
  const text = await res.body.text();
  return { status: res.statusCode, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

async function get(agent: Dispatcher, path: string) {
  const res = await request(`${cloud.url}${path}`, { dispatcher: agent });
  return { status: res.statusCode, json: (await res.body.json()) as Record<string, unknown> };
}

const t = (s: number) => new Date(Date.UTC(2026, 10, 23, 12, 0, s)).toISOString();

describe("ingest", () => {
  it("stores a batch, answers accepted, and serves items in source-timestamp order and the latest values", async () => {
    const agent = await clientAgent();
    const messages: Message[] = [
      data("m1", "speed", [[3, t(3)], [1, t(1)]]),
      data("m1", "temp", [[20.5, t(2)]]),
      { kind: "status", machine: "m1", state: "online", t: t(0) },
      { kind: "event", machine: "m1", key: "alarm", t: t(4), fields: { severity: 500, message: "door open" } },
    ];
    expect(await ingest(agent, { connector: "line-1", batch: 1, messages })).toEqual({ status: 200, json: { accepted: 5, duplicate: false } });
    expect(cloud.store.items("m1", "speed").map((i) => i.v)).toEqual([1, 3]);
    expect(cloud.store.latest("m1")).toEqual({ speed: { v: 3, q: 0, t: t(3) }, temp: { v: 20.5, q: 0, t: t(2) } });
    expect(cloud.store.events("m1").map((m) => m.kind)).toEqual(["status", "event"]);
    expect(cloud.store.counts()).toEqual({ requests: 1, batches: 1, duplicateBatches: 0, items: 5, duplicateItems: 0 });

    const latest = await get(agent, "/v1/machines/m1/latest");
    expect(latest).toEqual({ status: 200, json: { machine: "m1", values: cloud.store.latest("m1") } });
    const items = await get(agent, "/v1/machines/m1/items?key=speed");
    expect(items.json.items).toEqual([{ v: 1, q: 0, t: t(1) }, { v: 3, q: 0, t: t(3) }]);
    expect((await get(agent, "/v1/machines/m1/items")).status).toBe(400);
  });

  it("acknowledges a repeated idempotency key as a duplicate and stores nothing twice", async () => {
    const agent = await clientAgent();
    const body = { connector: "line-1", batch: 7, messages: [data("m1", "speed", [[1, t(1)], [2, t(2)]])] };
    expect((await ingest(agent, body)).json).toEqual({ accepted: 2, duplicate: false });
    expect((await ingest(agent, body)).json).toEqual({ accepted: 2, duplicate: true });
    expect(cloud.store.items("m1", "speed")).toHaveLength(2);
    expect(cloud.store.counts()).toMatchObject({ requests: 2, batches: 1, duplicateBatches: 1, items: 2, duplicateItems: 0 });
  });

  it("counts the same items under a new idempotency key as duplicate items", async () => {
    const agent = await clientAgent();
    const messages = [data("m1", "speed", [[1, t(1)], [2, t(2)]])];
    await ingest(agent, { connector: "line-1", batch: 1, messages });
    await ingest(agent, { connector: "line-1", batch: 2, messages });
    expect(cloud.store.counts()).toMatchObject({ batches: 2, items: 4, duplicateItems: 2 });
  });

  it("tells onBatch listeners about each batch", async () => {
    const agent = await clientAgent();
    const seen: Array<[number, boolean]> = [];
    cloud.store.onBatch((b) => seen.push([b.batch, b.duplicate]));
    const body = { connector: "line-1", batch: 3, messages: [data("m1", "k", [[1, t(1)]])] };
    await ingest(agent, body);
    await ingest(agent, body);
    expect(seen).toEqual([[3, false], [3, true]]);
  });
});

describe("refusals", () => {
  it("403 when the connector field is not the client certificate's CN; nothing stored", async () => {
    const agent = await clientAgent("line-1");
    const res = await ingest(agent, { connector: "line-2", batch: 1, messages: [data("m1", "k", [[1, t(1)]])] });
    expect(res.status).toBe(403);
    expect(res.json.error).toMatch(/connector 'line-2' does not match the client certificate \(CN 'line-1'\)/);
    expect(cloud.store.counts().items).toBe(0);
  });

  it("400 with a JSON error for malformed JSON", async () => {
    const agent = await clientAgent();
    const res = await ingest(agent, { connector: "line-1", batch: 1 }, {}, gzipSync("{not json"));
    expect(res.status).toBe(400);
    expect(res.json.error).toMatch(/not valid JSON/);
  });

  it("400 naming each invalid field of the envelope", async () => {
    const agent = await clientAgent();
    const res = await ingest(agent, {
      connector: "line-1",
      batch: 1,
      messages: [{ kind: "data", machine: "m1", items: [{ key: "k", v: 1, q: -1, t: "yesterday" }] }, { kind: "nope" }],
    });
    expect(res.status).toBe(400);
    const issues = (res.json.issues as string[]).join("\n");
    expect(issues).toMatch(/messages\.0\.items\.0\.q/);
    expect(issues).toMatch(/messages\.0\.items\.0\.t/);
    expect(issues).toMatch(/messages\.1\.kind/);
    expect(cloud.store.counts().items).toBe(0);
  });

  it("400 for a body that claims gzip but is not, and for a missing or foreign idempotency key", async () => {
    const agent = await clientAgent();
    const body = { connector: "line-1", batch: 1, messages: [data("m1", "k", [[1, t(1)]])] };
    expect((await ingest(agent, body, {}, Buffer.from(JSON.stringify(body)))).status).toBe(400);
    expect((await ingest(agent, body, { "idempotency-key": "line-2:e:1" })).status).toBe(400);
    expect((await ingest(agent, body, { "idempotency-key": "line-1:e:2" })).status).toBe(400);
  });

  it("413 for a gzip bomb (small body, huge decompressed size), and the server stays up", async () => {
    const agent = await clientAgent();
    const bomb = gzipSync(Buffer.alloc(32 * 1024 * 1024, 0x20));
    expect(bomb.length).toBeLessThan(100 * 1024);
    const res = await ingest(agent, { connector: "line-1", batch: 1 }, {}, bomb);
    expect(res.status).toBe(413);
    const ok = await ingest(agent, { connector: "line-1", batch: 2, messages: [data("m1", "k", [[1, t(1)]])] });
    expect(ok.status).toBe(200);
  });

  it("413 for a compressed body over the limit", async () => {
    const agent = await clientAgent();
    const res = await ingest(agent, { connector: "line-1", batch: 1 }, {}, Buffer.alloc(2 * 1024 * 1024, 1));
    expect(res.status).toBe(413);
  });

  it("answers injected faults: failNext and a status function", async () => {
    const agent = await clientAgent();
    const body = { connector: "line-1", batch: 1, messages: [data("m1", "k", [[1, t(1)]])] };
    cloud.faults.failNext = 1;
    expect((await ingest(agent, body)).status).toBe(503);
    cloud.faults.status = (_req, env) => (env.batch === 1 ? { status: 429, headers: { "retry-after": "1" } } : undefined);
    expect((await ingest(agent, body)).status).toBe(429);
    cloud.faults.status = undefined;
    expect((await ingest(agent, body)).status).toBe(200);
    expect(cloud.store.counts()).toMatchObject({ requests: 3, batches: 1 });
  });
});

describe("hostile mode", () => {
  const only = (kind: FaultKind, options: Partial<HostileOptions> = {}) => (cloud.faults.hostile = createHostile({ rate: 1, seed: 1, mix: { [kind]: 1 }, ...options }));
  const batch = (n: number, items = 1) => ({ connector: "line-1", batch: n, messages: [data("m1", `k${n}`, Array.from({ length: items }, (_, i): [number, string] => [i, t(i)]))] });
  /** The raw answer: status, headers and the body's chunks. */
  async function post(agent: Dispatcher, body: { batch: number }) {
    const res = await request(`${cloud.url}/v1/ingest`, {
      dispatcher: agent,
      method: "POST",
      headers: { "content-type": "application/json", "content-encoding": "gzip", "idempotency-key": `line-1:epoch-1:${body.batch}` },
      body: gzipSync(JSON.stringify(body)),
    });
    const chunks: string[] = [];
    for await (const chunk of res.body) chunks.push(String(chunk));
    return { status: res.statusCode, headers: res.headers, chunks, json: JSON.parse(chunks.join("")) as Record<string, unknown> };
  }

  it("reset and lostAnswer close the connection without an answer; only lostAnswer stored the batch, and its retry is a duplicate", async () => {
    const agent = await clientAgent();
    only("reset");
    await expect(post(agent, batch(1))).rejects.toMatchObject({ code: expect.stringMatching(/UND_ERR_SOCKET|ECONNRESET/) });
    expect(cloud.store.counts()).toMatchObject({ batches: 0, items: 0 });
    only("lostAnswer");
    await expect(post(agent, batch(2))).rejects.toMatchObject({ code: expect.stringMatching(/UND_ERR_SOCKET|ECONNRESET/) });
    expect(cloud.store.counts()).toMatchObject({ batches: 1, items: 1 });
    cloud.faults.hostile = undefined;
    expect((await post(agent, batch(2))).json).toEqual({ accepted: 1, duplicate: true });
    expect(cloud.store.counts()).toMatchObject({ requests: 3, batches: 1, duplicateBatches: 1, items: 1, duplicateItems: 0 });
  });

  it("unavailable and throttled answer 503 and 429 with Retry-After: 1 and store nothing", async () => {
    const agent = await clientAgent();
    only("unavailable");
    expect(await post(agent, batch(1))).toMatchObject({ status: 503, headers: { "retry-after": "1" } });
    only("throttled");
    expect(await post(agent, batch(1))).toMatchObject({ status: 429, headers: { "retry-after": "1" } });
    expect(cloud.store.counts().items).toBe(0);
  });

  it("tooLarge answers 413 to a batch of tooLargeMinItems or more and lets a smaller one pass", async () => {
    const agent = await clientAgent();
    only("tooLarge", { tooLargeMinItems: 4 });
    expect((await post(agent, batch(1, 4))).status).toBe(413);
    expect((await post(agent, batch(2, 3))).status).toBe(200);
    expect(cloud.store.counts()).toMatchObject({ batches: 1, items: 3 });
    expect(cloud.faults.hostile!.counts.tooLarge).toBe(1);
    // the resend of a stored batch gets its 200, whatever the dice say
    only("lostAnswer");
    await expect(post(agent, batch(3, 4))).rejects.toMatchObject({ code: expect.stringMatching(/UND_ERR_SOCKET|ECONNRESET/) });
    only("tooLarge", { tooLargeMinItems: 4 });
    expect(await post(agent, batch(3, 4))).toMatchObject({ status: 200, json: { accepted: 4, duplicate: true } });
    expect(cloud.store.counts()).toMatchObject({ batches: 2, items: 7, duplicateItems: 0 });
  });

  it("drip stores the batch, then trickles out its 200: headers and all on the first drip, the body byte by byte on the second", async () => {
    const agent = await clientAgent();
    only("drip", { dripIntervalMs: 10 });
    const first = await post(agent, batch(1));
    expect(first).toMatchObject({ status: 200, json: { accepted: 1, duplicate: false } });
    const second = await post(agent, batch(2));
    expect(second).toMatchObject({ status: 200, json: { accepted: 1, duplicate: false } });
    expect(second.chunks.length).toBeGreaterThan(1);
    expect(cloud.store.counts()).toMatchObject({ batches: 2, items: 2 });
    expect(cloud.faults.hostile!.counts.drip).toBe(2);
    await waitForValue(() => cloud.faults.hostile!.dripping === 0);
  });

  it("counts the ingest requests in flight and the most at once", async () => {
    const agent = await clientAgent();
    only("drip", { dripIntervalMs: 20 });
    const slow = [post(agent, batch(1)), post(agent, batch(2))];
    await waitForValue(() => cloud.inFlight.now === 2);
    await Promise.all(slow);
    await waitForValue(() => cloud.inFlight.now === 0);
    expect(cloud.inFlight.peak).toBe(2);
  });
});

async function waitForValue(condition: () => boolean): Promise<void> {
  for (const deadline = Date.now() + 10_000; !condition(); await new Promise((r) => setTimeout(r, 5))) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
  }
}

describe("stop", () => {
  it("closes a connection that has not finished its TLS handshake, rather than waiting for it", async () => {
    const raw = connect(cloud.port, "127.0.0.1"); // TCP only: no ClientHello yet
    raw.on("error", () => undefined);
    await new Promise((r) => raw.once("connect", r));
    const closed = new Promise((r) => raw.once("close", r));
    await cloud.stop();
    await closed;
    expect(raw.destroyed).toBe(true);
  });
});

describe("restart", () => {
  it("keeps CA, server key (pin), data and idempotency keys when restarted on the same dir and port", async () => {
    const agent = await clientAgent();
    const body = { connector: "line-1", batch: 1, messages: [data("m1", "k", [[1, t(1)]])] };
    expect((await ingest(agent, body)).json.duplicate).toBe(false);
    const { port, pin } = cloud;
    const caPem = cloud.ca.certPem;
    await cloud.stop();

    cloud = await startDevCloud({ dir, port, logger: silentLogger(), requireTokens: false });
    cleanup.push(() => cloud.stop());
    expect(cloud.port).toBe(port);
    expect(cloud.pin).toBe(pin);
    expect(spkiPin(cloud.serverCertPem)).toBe(pin);
    expect(cloud.ca.certPem).toBe(caPem);
    // The same client agent (same cert, same pin) gets in, and the batch is known.
    expect((await ingest(agent, body)).json.duplicate).toBe(true);
    expect(cloud.store.items("m1", "k")).toHaveLength(1);
    expect(cloud.store.counts()).toMatchObject({ requests: 2, batches: 1, duplicateBatches: 1 });
  });
});
