/**
 * Access tokens against the devcloud's real authorization server (oidc-provider over HTTPS)
 * and its real ingest: how tokens are obtained, bound, refused, renewed and never logged.
 */
import { createHash, X509Certificate } from "node:crypto";
import path from "node:path";
import { decodeJwt } from "jose";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { DurableBuffer } from "../../src/buffer/buffer.ts";
import { CertAuthority } from "../../src/certs/devca.ts";
import { startDevCloud, type DevCloud, type DevCloudOptions } from "../../src/devcloud/server.ts";
import { silentLogger } from "../../src/log.ts";
import { TokenClient, type TokenClientOptions } from "../../src/uplink/tokens.ts";
import { Transport } from "../../src/uplink/transport.ts";
import { clientIdentity, newSender, numberedItems, openBuffer, runCleanups, tempDir, type Cleanups } from "./helpers.ts";

let dir: string;
let cloud: DevCloud;
const cleanups: Cleanups = [];

async function setup(options: Partial<DevCloudOptions> = {}) {
  const tmp = await tempDir("kerf-tokens-");
  dir = tmp.dir;
  cleanups.push(tmp.remove);
  cloud = await startDevCloud({ dir: path.join(dir, "cloud"), logger: silentLogger(), ...options });
  cleanups.push(() => cloud.stop());
}

/** A transport presenting a fresh certificate of `instance` from `ca` (default the devcloud's). */
async function transportFor(instance = "line-1", ca: CertAuthority = cloud.ca) {
  const identity = await clientIdentity(ca, instance);
  const transport = new Transport({ ...identity, caPem: cloud.ca.certPem, pins: [cloud.pin], logger: silentLogger() });
  cleanups.push(() => transport.close());
  return { identity, transport };
}

function tokenClient(transport: Transport, keyPem: string, options: Partial<TokenClientOptions> = {}) {
  const client = new TokenClient({
    issuer: cloud.auth.issuer,
    method: "tls_client_auth",
    clientId: "line-1",
    scope: "ingest",
    resource: cloud.url,
    transport,
    keyPem,
    logger: silentLogger(),
    retry: { initialDelayMs: 50, maxDelayMs: 200 },
    ...options,
  });
  cleanups.push(() => client.close());
  return client;
}

function thumbprint(certPem: string): string {
  return createHash("sha256").update(new X509Certificate(certPem).raw).digest("base64url");
}

beforeEach(() => {
  cleanups.length = 0;
});
afterEach(async () => {
  await runCleanups(cleanups);
});

describe("tls_client_auth", () => {
  it("gets a JWT access token bound to the client certificate, and ingest accepts it", async () => {
    await setup();
    const { identity, transport } = await transportFor();
    const client = tokenClient(transport, identity.keyPem);
    const token = (await client.token()).reveal();
    const claims = decodeJwt(token);
    expect(claims.client_id).toBe("line-1");
    expect(claims.aud).toBe(cloud.url);
    expect(claims.scope).toBe("ingest");
    expect((claims.cnf as Record<string, string>)["x5t#S256"]).toBe(thumbprint(identity.certPem));

    const buffer: DurableBuffer = openBuffer(dir, 16 * 1024 ** 2, cleanups);
    const items = numberedItems();
    buffer.append(items.batch(10));
    const sender = newSender({ store: buffer, transport, url: cloud.url, tokens: client, pollIntervalMs: 20 }, cleanups);
    sender.start();
    expect(await sender.drain(20_000)).toBe(true);
    expect(cloud.store.counts().items).toBe(10);
    expect(cloud.tokens.refused).toBe(0);
  });
});
