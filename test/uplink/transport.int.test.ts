/**
 * The transport swaps the client certificate under a running sender: against the real devcloud
 * (which demands client certificates from its CA) and the real durable buffer.
 */
import { X509Certificate } from "node:crypto";
import path from "node:path";
import type { Dispatcher } from "undici";
import { afterEach, describe, expect, it } from "vitest";
import { startDevCloud } from "../../src/devcloud/server.ts";
import { isKerfError } from "../../src/errors.ts";
import { silentLogger } from "../../src/log.ts";
import type { Message } from "../../src/message.ts";
import { waitFor } from "../helpers/env.ts";
import { clientIdentity, clientTransport, newSender, openBuffer, runCleanups, tempDir, type Cleanups } from "./helpers.ts";

const cleanup: Cleanups = [];
afterEach(() => runCleanups(cleanup));

const serial = (pem: string) => new X509Certificate(pem).serialNumber;

function values(from: number, n: number): Message[] {
  const items = Array.from({ length: n }, (_, i) => ({ key: "counter", v: from + i, q: 0, t: new Date(Date.UTC(2026, 0, 1) + from + i).toISOString() }));
  return [{ kind: "data", machine: "m1", items }];
}

async function setup() {
  const { dir, remove } = await tempDir("kerf-transport-");
  cleanup.push(remove);
  const cloud = await startDevCloud({ dir: path.join(dir, "cloud"), logger: silentLogger(), requireTokens: false });
  cleanup.push(() => cloud.stop());
  const buffer = openBuffer(dir, 64 * 1024 * 1024, cleanup);
  const { identity: first, transport } = await clientTransport(cloud.ca, [cloud.pin], cleanup, { connections: 4 });
  return { cloud, buffer, first, transport };
}

describe("the transport", () => {
  it("rotates the client certificate mid-stream: nothing lost, no request fails, new connections show the new certificate", { timeout: 60_000 }, async () => {
    const { cloud, buffer, first, transport } = await setup();
    const sender = newSender(
      { store: buffer, transport, url: cloud.url, concurrency: 2, requestTimeoutMs: 10_000, retry: { initialDelayMs: 20, maxDelayMs: 100 }, pollIntervalMs: 20 },
      cleanup,
    );
    sender.start();

    // A steady producer: 10 values every 10 ms, while the certificate changes under it.
    let produced = 0;
    const produce = setInterval(() => {
      buffer.append(values(produced, 10));
      produced += 10;
      sender.wake();
    }, 10);
    cleanup.push(() => clearInterval(produce));

    const oldSerial = serial(first.certPem);
    await waitFor("requests with the first certificate", () => (cloud.clientCertificates.get(oldSerial) ?? 0) >= 10, 20_000);
    const second = await clientIdentity(cloud.ca, "line-1");
    const newSerial = serial(second.certPem);
    expect(newSerial).not.toBe(oldSerial);
    // Rotate while the cloud is in the middle of a request: it must finish on the old connection.
    await waitFor("a request in flight", () => cloud.inFlight.now > 0, 20_000, 1);
    const inFlightAtRotation = cloud.inFlight.now;
    transport.rotate(second);
    expect(inFlightAtRotation).toBeGreaterThan(0);

    await waitFor("requests with the new certificate", () => (cloud.clientCertificates.get(newSerial) ?? 0) >= 10, 20_000);
    // The old connections are gone once idle: from here on, only the new certificate comes.
    const oldCount = cloud.clientCertificates.get(oldSerial);
    await waitFor("more requests", () => (cloud.clientCertificates.get(newSerial) ?? 0) >= 30, 20_000);
    clearInterval(produce);
    expect(await sender.drain(20_000)).toBe(true);

    expect(cloud.clientCertificates.get(oldSerial)).toBe(oldCount);
    expect([...cloud.clientCertificates.keys()].sort()).toEqual([oldSerial, newSerial].sort());
    // every value once, none failed on the way
    expect(cloud.store.counts()).toMatchObject({ items: produced, duplicateItems: 0 });
    expect(buffer.stats()).toMatchObject({ items: 0, ackedItems: produced, droppedItems: 0 });
    expect(sender.stats()).toMatchObject({ retries: 0, rejectedItems: 0 });
    expect(sender.health()).toMatchObject({ consecutiveFailures: 0, lastError: null });
  });

  it("refuses a certificate that does not belong to its key, and keeps the working one", async () => {
    const { cloud, buffer, first, transport } = await setup();
    const other = await clientIdentity(cloud.ca, "line-1");
    let refused: unknown;
    try {
      transport.rotate({ certPem: other.certPem, keyPem: first.keyPem });
    } catch (err) {
      refused = err;
    }
    expect(isKerfError(refused, "CERT_KEY_MISMATCH")).toBe(true);

    buffer.append(values(0, 5));
    const sender = newSender({ store: buffer, transport, url: cloud.url, concurrency: 1, requestTimeoutMs: 10_000 }, cleanup);
    sender.start();
    expect(await sender.drain(10_000)).toBe(true);
    expect([...cloud.clientCertificates.keys()]).toEqual([serial(first.certPem)]);
  });

  it("takes request decoration by composition: an interceptor's header reaches the cloud, also after a rotation", async () => {
    const { cloud, buffer, transport } = await setup();
    const seen: string[] = [];
    cloud.faults.status = (req) => {
      seen.push(String(req.headers["x-kerf-test"]));
      return undefined;
    };
    // How a bearer token will be added later, without the sender knowing.
    const decorate: Dispatcher.DispatcherComposeInterceptor = (dispatch) => (options, handler) =>
      dispatch({ ...options, headers: { ...(options.headers as Record<string, string>), "x-kerf-test": "decorated" } }, handler);
    const sender = newSender({ store: buffer, transport: transport.compose(decorate), url: cloud.url, concurrency: 1, requestTimeoutMs: 10_000 }, cleanup);
    sender.start();
    buffer.append(values(0, 5));
    expect(await sender.drain(10_000)).toBe(true);
    const second = await clientIdentity(cloud.ca, "line-1");
    transport.rotate(second);
    buffer.append(values(5, 5));
    sender.wake();
    expect(await sender.drain(10_000)).toBe(true);
    expect(seen).toEqual(["decorated", "decorated"]);
    expect(cloud.clientCertificates.get(serial(second.certPem))).toBe(1);
  });

  it("cannot be given a certificate once closed", async () => {
    const { cloud, transport } = await setup();
    await transport.close();
    const next = await clientIdentity(cloud.ca, "line-1");
    expect(() => transport.rotate(next)).toThrow(/closed/);
  });
});
