/**
 * Cloud answers that never finish properly — a body that trickles forever, a connection reset
 * in the middle of the body — must cost a retry, never the data.
 */
import https from "node:https";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { afterEach, expect, it } from "vitest";
import { createDevCa } from "../../src/certs/devca.ts";
import { spkiPin } from "../../src/certs/pins.ts";
import { clientTransport, newSender, openBuffer, runCleanups, tempDir, type Cleanups } from "./helpers.ts";

const cleanup: Cleanups = [];
afterEach(() => runCleanups(cleanup));

type Mode = "drip" | "reset" | "ok";

async function start(mode: { current: Mode }) {
  const { dir, remove } = await tempDir("kerf-bad-responses-");
  cleanup.push(remove);
  const ca = await createDevCa(path.join(dir, "ca"));
  const server = await ca.issueServerCert({ ips: ["127.0.0.1"] });
  let okBatches = 0;
  const timers = new Set<NodeJS.Timeout>();
  const cloud = https.createServer({ cert: server.chainPem, key: server.keyPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: true }, (req, res) => {
    req.resume();
    req.on("end", () => {
      if (mode.current === "ok") {
        okBatches++;
        res.writeHead(200, { "content-type": "application/json" }).end('{"accepted":1,"duplicate":false}');
      } else if (mode.current === "reset") {
        res.writeHead(200, { "content-type": "application/json", "content-length": "64" });
        res.write('{"accepted":');
        setTimeout(() => res.socket?.destroy(), 20);
      } else {
        res.writeHead(200, { "content-type": "application/json" });
        const t = setInterval(() => res.write(" "), 200);
        timers.add(t);
        res.on("close", () => clearInterval(t));
      }
    });
  });
  await new Promise<void>((r) => cloud.listen(0, "127.0.0.1", r));
  cleanup.push(() => new Promise<void>((r) => {
    for (const t of timers) clearInterval(t);
    cloud.closeAllConnections();
    cloud.close(() => r());
  }));
  const buffer = openBuffer(dir, 16 * 1024 * 1024, cleanup);
  const { transport } = await clientTransport(ca, [spkiPin(server.certPem)], cleanup);
  const sender = newSender(
    {
      store: buffer,
      transport,
      url: `https://127.0.0.1:${(cloud.address() as AddressInfo).port}`,
      concurrency: 1,
      requestTimeoutMs: 800,
      retry: { initialDelayMs: 50, maxDelayMs: 200 },
      pollIntervalMs: 50,
    },
    cleanup,
  );
  return { buffer, sender, okBatches: () => okBatches };
}

for (const bad of ["drip", "reset"] as const) {
  it(`a ${bad === "drip" ? "body that trickles forever" : "connection reset mid-body"} is retried, and the batch stays buffered until a real 200`, async () => {
    const mode: { current: Mode } = { current: bad };
    const { buffer, sender, okBatches } = await start(mode);
    buffer.append([{ kind: "data", machine: "m", items: [{ key: "a", v: 1, q: 0, t: new Date().toISOString() }] }]);
    sender.start();
    await new Promise((r) => setTimeout(r, 2500));
    expect(sender.stats().ackedItems).toBe(0);
    expect(sender.stats().retries).toBeGreaterThan(0);
    expect(buffer.stats().items).toBe(1);
    expect(sender.health().consecutiveFailures).toBeGreaterThan(0);

    mode.current = "ok";
    expect(await sender.drain(10_000)).toBe(true);
    expect(okBatches()).toBe(1);
    expect(buffer.stats()).toMatchObject({ items: 0, ackedItems: 1, droppedItems: 0 });
  });
}
