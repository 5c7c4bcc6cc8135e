/**
 * The cloud side of mutual TLS: the devcloud lets in only clients with a current certificate
 * from its CA, and the uplink reports a refusal as UPLINK_NO_CLIENT_CERT, not as a socket error;
 * and a connection the cloud accepted and then reset is a network error, not a refusal.
 */
import tls from "node:tls";
import { gzipSync } from "node:zlib";
import { Agent, request, type Dispatcher } from "undici";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createDevCa } from "../../src/certs/devca.ts";
import { createHostile, type FaultKind } from "../../src/devcloud/hostile.ts";
import { startDevCloud, type DevCloud } from "../../src/devcloud/server.ts";
import type { KerfError } from "../../src/errors.ts";
import { silentLogger } from "../../src/log.ts";
import { Transport } from "../../src/uplink/transport.ts";
import { toUplinkError } from "../../src/uplink/errors.ts";
import { classify } from "../../src/uplink/retry.ts";
import { clientIdentity, tempDir } from "./helpers.ts";

let cloud: DevCloud;
let removeDir: () => Promise<void>;
let otherCaDir: string;
const cleanup: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  const tmp = await tempDir("kerf-mtls-");
  removeDir = tmp.remove;
  otherCaDir = `${tmp.dir}/other-ca`;
  cloud = await startDevCloud({ dir: `${tmp.dir}/cloud`, logger: silentLogger(), requireTokens: false });
});
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!().catch(() => undefined);
});
afterAll(async () => {
  await cloud.stop();
  await removeDir();
});

function track(agent: Dispatcher): Dispatcher {
  cleanup.push(() => agent.close());
  return agent;
}

/** A GET /v1/machines/m1/latest: the status, or the uplink's KerfError. */
async function probe(agent: Dispatcher): Promise<number | KerfError> {
  try {
    const res = await request(`${cloud.url}/v1/machines/m1/latest`, { dispatcher: agent });
    await res.body.text();
    return res.statusCode;
  } catch (err) {
    return toUplinkError(err, new URL(cloud.url).host);
  }
}

const code = (r: number | KerfError) => (typeof r === "number" ? r : r.code);

/** A valid POST /v1/ingest as the sender makes it: the status, or the uplink's KerfError. */
async function ingest(agent: Dispatcher, batch: number): Promise<number | KerfError> {
  const messages = [{ kind: "data", machine: "m1", items: [{ key: "a", v: batch, q: 0, t: new Date().toISOString() }] }];
  try {
    const res = await request(`${cloud.url}/v1/ingest`, {
      dispatcher: agent,
      method: "POST",
      headers: { "content-type": "application/json", "content-encoding": "gzip", "idempotency-key": `line-1:epoch:${batch}` },
      body: gzipSync(JSON.stringify({ connector: "line-1", batch, messages })),
    });
    await res.body.text();
    return res.statusCode;
  } catch (err) {
    return toUplinkError(err, new URL(cloud.url).host);
  }
}

describe("client certificates at the devcloud", () => {
  it("a current certificate from the cloud's CA gets in", async () => {
    const id = await clientIdentity(cloud.ca, "line-1");
    expect(await probe(track(new Transport({ ...id, caPem: cloud.ca.certPem, pins: [cloud.pin], logger: silentLogger() })))).toBe(200);
  });

  it("no client certificate: refused, reported as UPLINK_NO_CLIENT_CERT with a clear message", async () => {
    const agent = track(new Agent({ connect: { ca: cloud.ca.certPem, maxCachedSessions: 0 } }));
    const result = await probe(agent);
    expect(code(result)).toBe("UPLINK_NO_CLIENT_CERT");
    expect((result as KerfError).message).toMatch(/refused our client certificate/);
    expect((result as KerfError).message).toContain(new URL(cloud.url).host);
  });

  it("a certificate from another CA: refused", async () => {
    const other = await createDevCa(otherCaDir);
    const id = await clientIdentity(other, "line-1");
    expect(code(await probe(track(new Transport({ ...id, caPem: cloud.ca.certPem, pins: [cloud.pin], logger: silentLogger() }))))).toBe("UPLINK_NO_CLIENT_CERT");
  });

  it("an expired certificate from the right CA: refused", async () => {
    const day = 86400_000;
    const id = await clientIdentity(cloud.ca, "line-1", { notBefore: new Date(Date.now() - 30 * day), notAfter: new Date(Date.now() - day) });
    expect(code(await probe(track(new Transport({ ...id, caPem: cloud.ca.certPem, pins: [cloud.pin], logger: silentLogger() }))))).toBe("UPLINK_NO_CLIENT_CERT");
  });

  it("a certificate that is not valid yet: refused", async () => {
    const day = 86400_000;
    const id = await clientIdentity(cloud.ca, "line-1", { notBefore: new Date(Date.now() + day), notAfter: new Date(Date.now() + 30 * day) });
    expect(code(await probe(track(new Transport({ ...id, caPem: cloud.ca.certPem, pins: [cloud.pin], logger: silentLogger() }))))).toBe("UPLINK_NO_CLIENT_CERT");
  });

  for (const kind of ["reset", "lostAnswer"] as FaultKind[]) {
    it(`a healthy cloud that closes a fresh connection after reading the request (${kind}): UPLINK_NETWORK at warn, not a refused certificate`, async () => {
      const id = await clientIdentity(cloud.ca, "line-1");
      cloud.faults.hostile = createHostile({ rate: 1, seed: 1, mix: { [kind]: 1 } });
      try {
        // A new agent each time: the request is the first on its connection, which is what used to mislead.
        for (let batch = 1; batch <= 3; batch++) {
          const result = await ingest(track(new Transport({ ...id, caPem: cloud.ca.certPem, pins: [cloud.pin], logger: silentLogger() })), batch);
          expect(code(result), `attempt ${batch}`).toBe("UPLINK_NETWORK");
          expect(classify({ error: result })).toMatchObject({ action: "retry", level: "warn" });
        }
      } finally {
        cloud.faults.hostile = undefined;
      }
      // The same identity is let in: nothing was wrong with the certificate.
      expect(await ingest(track(new Transport({ ...id, caPem: cloud.ca.certPem, pins: [cloud.pin], logger: silentLogger() })), 9)).toBe(200);
    });
  }

  it("a client limited to TLS 1.1: refused during the handshake", async () => {
    const id = await clientIdentity(cloud.ca, "line-1");
    const outcome = await new Promise<string>((resolve) => {
      const socket = tls.connect({
        host: "127.0.0.1",
        port: cloud.port,
        ...id,
        ca: cloud.ca.certPem,
        minVersion: "TLSv1",
        maxVersion: "TLSv1.1",
        ciphers: "DEFAULT@SECLEVEL=0",
      });
      socket.once("secureConnect", () => {
        socket.destroy();
        resolve(`connected with ${socket.getProtocol()}`);
      });
      socket.once("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    });
    expect(outcome).not.toMatch(/^connected/);
    expect(outcome).toMatch(/ERR_SSL|ECONNRESET|EPROTO/);
  });
});
