/**
 * Access tokens against the devcloud's real authorization server (oidc-provider over HTTPS)
 * and its real ingest: how tokens are obtained, bound, refused, renewed and never logged.
 */
import { createHash, X509Certificate } from "node:crypto";
import path from "node:path";
import { Writable } from "node:stream";
import { decodeJwt, importPKCS8, SignJWT, type JWTPayload } from "jose";
import { Agent, request, type Dispatcher } from "undici";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { DurableBuffer } from "../../src/buffer/buffer.ts";
import { CertAuthority } from "../../src/certs/devca.ts";
import { startDevCloud, type DevCloud, type DevCloudOptions } from "../../src/devcloud/server.ts";
import { isKerfError } from "../../src/errors.ts";
import { createLogger, silentLogger } from "../../src/log.ts";
import { Sender } from "../../src/uplink/sender.ts";
import { TokenClient, type TokenClientOptions } from "../../src/uplink/tokens.ts";
import { Transport } from "../../src/uplink/transport.ts";
import { clientIdentity, countStored, newSender, notExactlyOnce, numberedItems, openBuffer, runCleanups, tempDir, type Cleanups } from "./helpers.ts";

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

/** A token request sent by hand, to try what openid-client would never send. */
async function tokenRequest(dispatcher: Dispatcher, form: Record<string, string>) {
  const res = await request(`${cloud.auth.issuer}/token`, {
    dispatcher,
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "client_credentials", client_id: "line-1", scope: "ingest", resource: cloud.url, ...form }).toString(),
  });
  return { status: res.statusCode, body: (await res.body.json()) as { error?: string; access_token?: string } };
}

/** A private_key_jwt client assertion (RFC 7523) for line-1, signed with `keyPem`; `claims` override or (undefined) remove the standard ones. */
async function assertion(keyPem: string, claims: Partial<Record<"exp" | "aud" | "jti" | "iat", unknown>> = {}) {
  const now = Math.floor(Date.now() / 1000);
  const payload: Record<string, unknown> = { iss: "line-1", sub: "line-1", aud: cloud.auth.issuer, jti: crypto.randomUUID(), iat: now, exp: now + 60, ...claims };
  for (const [k, v] of Object.entries(payload)) if (v === undefined) delete payload[k];
  const jwt = await new SignJWT(payload as JWTPayload).setProtectedHeader({ alg: "ES256" }).sign(await importPKCS8(keyPem, "ES256"));
  return { client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", client_assertion: jwt };
}

/** A raw ingest request with a token, over `dispatcher`. */
async function ingest(dispatcher: Dispatcher, token: string) {
  const body = JSON.stringify({ connector: "line-1", batch: 1, messages: [{ kind: "data", machine: "m1", items: [{ key: "k", v: 1, q: 0, t: new Date().toISOString() }] }] });
  const res = await request(`${cloud.url}/v1/ingest`, { dispatcher, method: "POST", headers: { "content-type": "application/json", "idempotency-key": "line-1:0:1", authorization: `Bearer ${token}` }, body });
  await res.body.text();
  return { status: res.statusCode, challenge: String(res.headers["www-authenticate"] ?? "") };
}

async function until(what: string, condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
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

describe("private_key_jwt", () => {
  it("gets a token with a client assertion signed by the instance key, bound to the certificate too", async () => {
    await setup();
    const { identity, transport } = await transportFor();
    const client = tokenClient(transport, identity.keyPem, { method: "private_key_jwt" });
    const token = (await client.token()).reveal();
    expect(decodeJwt(token).client_id).toBe("line-1");
    expect((decodeJwt(token).cnf as Record<string, string>)["x5t#S256"]).toBe(thumbprint(identity.certPem));
    expect(await ingest(transport, token)).toMatchObject({ status: 200 });
  });

  it("refuses assertions without exp, aud or jti, expired ones and a replayed one; the same assertion made properly passes", async () => {
    await setup();
    const { identity, transport } = await transportFor();
    const valid = await assertion(identity.keyPem);
    expect((await tokenRequest(transport, valid)).status).toBe(200);
    const refused = async (form: Record<string, string>) => {
      const before = cloud.auth.refusals.length;
      const { status, body } = await tokenRequest(transport, form);
      return { status, error: body.error, detail: cloud.auth.refusals.slice(before).map((r) => r.detail).join("; ") };
    };
    expect(await refused(await assertion(identity.keyPem, { exp: undefined }))).toMatchObject({ status: 401, error: "invalid_client", detail: expect.stringMatching(/expiration must be specified/) });
    expect(await refused(await assertion(identity.keyPem, { aud: undefined }))).toMatchObject({ status: 401, error: "invalid_client", detail: expect.stringMatching(/aud/) });
    expect(await refused(await assertion(identity.keyPem, { jti: undefined }))).toMatchObject({ status: 401, error: "invalid_client", detail: expect.stringMatching(/jti/) });
    const past = Math.floor(Date.now() / 1000) - 600;
    expect(await refused(await assertion(identity.keyPem, { iat: past, exp: past + 60 }))).toMatchObject({ status: 401, error: "invalid_client" });
    // The assertion that worked above, sent again: oidc-provider remembers its jti until it expires.
    expect(await refused(valid)).toMatchObject({ status: 401, error: "invalid_client", detail: expect.stringMatching(/only be used once/) });
    // Signed by another key than the certificate's the CA issued for line-1.
    const other = await clientIdentity(await CertAuthority.createRoot("CN=Other"), "line-1");
    expect(await refused(await assertion(other.keyPem))).toMatchObject({ status: 401, error: "invalid_client" });
  });
});

describe("tls_client_auth refusals", () => {
  it("refuses a token request with no client certificate", async () => {
    await setup();
    const bare = new Agent({ connect: { ca: cloud.ca.certPem } });
    cleanups.push(() => bare.close());
    const { status, body } = await tokenRequest(bare, {});
    expect({ status, error: body.error }).toEqual({ status: 401, error: "invalid_client" });
    expect(cloud.auth.refusals.at(-1)?.detail).toMatch(/certificate was not provided/);
  });

  it("refuses a certificate from another CA, even with the right SAN", async () => {
    await setup();
    const other = await CertAuthority.createRoot("CN=Not The Devcloud CA");
    const { identity, transport } = await transportFor("line-1", other);
    expect(new X509Certificate(identity.certPem).subjectAltName).toBe("URI:urn:kerf:line-1");
    const { status, body } = await tokenRequest(transport, {});
    expect({ status, error: body.error }).toEqual({ status: 401, error: "invalid_client" });
    expect(cloud.auth.refusals.at(-1)?.detail).toMatch(/not verified/);
  });

  it("refuses another instance's certificate (SAN mismatch), and the token client reports AUTH_TOKEN naming issuer and error", async () => {
    await setup();
    const { identity, transport } = await transportFor("line-2");
    const client = tokenClient(transport, identity.keyPem);
    const err = await client.token().catch((e: unknown) => e);
    expect(isKerfError(err, "AUTH_TOKEN")).toBe(true);
    expect((err as Error).message).toContain(cloud.auth.issuer);
    expect((err as Error).message).toContain("invalid_client");
    expect(cloud.auth.refusals.at(-1)?.detail).toMatch(/subject value does not match/);
    expect(client.health().lastError).toContain("invalid_client");

    // The sender keeps the batch, reports the code in its health, and retries.
    const buffer = openBuffer(dir, 16 * 1024 ** 2, cleanups);
    buffer.append(numberedItems().batch(3));
    const sender = newSender({ store: buffer, transport, url: cloud.url, tokens: client, pollIntervalMs: 20, retry: { initialDelayMs: 20, maxDelayMs: 100 } }, cleanups);
    sender.start();
    await until("the token failure in the sender's health", () => sender.health().lastErrorCode === "AUTH_TOKEN");
    expect(buffer.stats().items).toBe(3);
    expect(cloud.store.counts().items).toBe(0);
  });
});

describe("token request failures", () => {
  it("are retried with backoff on their own: a token comes once the server knows the instance's key", async () => {
    await setup();
    const { identity, transport } = await transportFor();
    // The server has no key for line-1 yet (as for a certificate it did not issue itself).
    const leaf = cloud.ca.issuedClientCerts.get("line-1")!;
    cloud.ca.issuedClientCerts.delete("line-1");
    const client = tokenClient(transport, identity.keyPem, { method: "private_key_jwt" });
    const err = await client.token().catch((e: unknown) => e);
    expect(isKerfError(err, "AUTH_TOKEN")).toBe(true);
    expect((err as Error).message).toMatch(/invalid_client/);
    await until("a second refused attempt", () => cloud.auth.refusals.length >= 2);
    cloud.ca.issuedClientCerts.set("line-1", leaf);
    // Nobody asks again: the client's own retry gets the token.
    // The server counts the token when it answers; the client holds it once it has read the answer.
    await until("the client holds a token", () => client.health().expiresAt !== null);
    expect(cloud.auth.counts.tokensIssued).toBe(1);
    expect(client.health().lastError).toBeNull();
    expect(await ingest(transport, (await client.token()).reveal())).toMatchObject({ status: 200 });
  });
});

describe("ingest checks the token", () => {
  it("refuses a bound token presented over a different client certificate of the same instance", async () => {
    await setup();
    const a = await transportFor();
    const b = await transportFor();
    const token = (await tokenClient(a.transport, a.identity.keyPem).token()).reveal();
    expect(await ingest(a.transport, token)).toMatchObject({ status: 200 });
    const refused = await ingest(b.transport, token);
    expect(refused.status).toBe(401);
    expect(refused.challenge).toMatch(/^Bearer .*error="invalid_token"/);
    expect(refused.challenge).toMatch(/another client certificate/);
  });

  it("refuses a request without a token, a forged one, and a token for another audience", async () => {
    await setup();
    const { identity, transport } = await transportFor();
    expect(await ingest(transport, "")).toMatchObject({ status: 401, challenge: expect.stringMatching(/error="invalid_request"/) });
    const token = (await tokenClient(transport, identity.keyPem).token()).reveal();
    const [h, p] = token.split(".");
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...decodeJwt(token), scope: "ingest admin" })).toString("base64url")}.${token.split(".")[2]}`;
    expect(p).not.toBe(forged.split(".")[1]);
    expect(await ingest(transport, forged)).toMatchObject({ status: 401, challenge: expect.stringMatching(/error="invalid_token"/) });
    const { status, body } = await tokenRequest(transport, { resource: "https://elsewhere.example" });
    expect(status).toBe(400);
    expect(body.error).toBe("invalid_target");
  });
});

describe("renewal", () => {
  it("a 401 makes exactly one token request and one retry; the batch is delivered once", async () => {
    await setup();
    const { identity, transport } = await transportFor();
    const client = tokenClient(transport, identity.keyPem);
    const buffer = openBuffer(dir, 16 * 1024 ** 2, cleanups);
    const sender = newSender({ store: buffer, transport, url: cloud.url, tokens: client, pollIntervalMs: 20 }, cleanups);
    await client.token();
    expect(cloud.auth.counts.tokenRequests).toBe(1);
    // A restarted cloud has a new signing key: every token it issued before is now invalid.
    const { port, auth } = cloud;
    const authPort = auth.port;
    await cloud.stop();
    cloud = await startDevCloud({ dir: path.join(dir, "cloud"), port, authPort, logger: silentLogger() });
    cleanups.push(() => cloud.stop());
    buffer.append(numberedItems().batch(5));
    sender.start();
    expect(await sender.drain(20_000)).toBe(true);
    expect(cloud.tokens.refused).toBe(1);
    expect(cloud.auth.counts.tokenRequests).toBe(1);
    expect(cloud.store.counts().items).toBe(5);
    expect(sender.stats().unauthorized).toBe(1);
  });

  it("a second 401 goes to the retry policy: the batch stays buffered, one token request per attempt, and is delivered once the cloud accepts", async () => {
    await setup();
    const { identity, transport } = await transportFor();
    const client = tokenClient(transport, identity.keyPem);
    const buffer = openBuffer(dir, 16 * 1024 ** 2, cleanups);
    let refusing = true;
    let refused = 0;
    cloud.faults.status = () => {
      if (!refusing) return undefined;
      refused++;
      return { status: 401, headers: { "www-authenticate": 'Bearer error="invalid_token"' } };
    };
    buffer.append(numberedItems().batch(5));
    const sender = newSender({ store: buffer, transport, url: cloud.url, tokens: client, pollIntervalMs: 20, retry: { initialDelayMs: 100, maxDelayMs: 200 } }, cleanups);
    sender.start();
    await until("a second 401", () => sender.health().lastErrorCode === "HTTP_401");
    expect(buffer.stats().items).toBe(5);
    await until("another attempt", () => refused >= 4);
    refusing = false;
    expect(await sender.drain(20_000)).toBe(true);
    expect(cloud.store.counts().items).toBe(5);
    // Each attempt: a 401, one new token, the retry, a 401 again.
    expect(refused % 2).toBe(0);
    expect(sender.stats().unauthorized).toBe(refused);
    expect(cloud.auth.counts.tokenRequests).toBe(1 + refused / 2);
  });

  it("concurrent callers share one token request, also when several requests meet a 401 at once", async () => {
    await setup();
    const { identity, transport } = await transportFor();
    const client = tokenClient(transport, identity.keyPem);
    const tokens = await Promise.all(Array.from({ length: 10 }, () => client.token()));
    expect(new Set(tokens.map((t) => t.reveal())).size).toBe(1);
    expect(cloud.auth.counts.tokenRequests).toBe(1);
    const renewed = await Promise.all(Array.from({ length: 10 }, () => client.renew(tokens[0]!)));
    expect(new Set(renewed.map((t) => t.reveal())).size).toBe(1);
    expect(renewed[0]!.reveal()).not.toBe(tokens[0]!.reveal());
    expect(cloud.auth.counts.tokenRequests).toBe(2);
    // A late 401 for the old token: the new one is already there.
    expect((await client.renew(tokens[0]!)).reveal()).toBe(renewed[0]!.reveal());
    expect(cloud.auth.counts.tokenRequests).toBe(2);
  });

  it("renews ahead of expiry on its own, and counts renewals", async () => {
    await setup({ tokenTtlSeconds: 2 });
    const { identity, transport } = await transportFor();
    const client = tokenClient(transport, identity.keyPem);
    const first = (await client.token()).reveal();
    // Nobody asks for a token meanwhile.
    await until("two renewals", () => client.health().renewals >= 2);
    expect(cloud.auth.counts.tokensIssued).toBeGreaterThanOrEqual(3);
    expect((await client.token()).reveal()).not.toBe(first);
  });

  it("a certificate rotation fetches a new token at once, bound to the new certificate", async () => {
    await setup();
    const { identity, transport } = await transportFor();
    const client = tokenClient(transport, identity.keyPem, { method: "private_key_jwt" });
    const before = (await client.token()).reveal();
    const next = await clientIdentity(cloud.ca, "line-1");
    transport.rotate(next);
    // Nobody asks for a token: the rotation alone fetches it.
    await until("a token request after the rotation", () => cloud.auth.counts.tokensIssued === 2);
    const after = (await client.token()).reveal();
    expect(after).not.toBe(before);
    expect((decodeJwt(after).cnf as Record<string, string>)["x5t#S256"]).toBe(thumbprint(next.certPem));
    expect(await ingest(transport, after)).toMatchObject({ status: 200 });
    expect(cloud.auth.counts.tokenRequests).toBe(2);
  });
});

describe("certificate rotation mid-stream", () => {
  it("loses nothing, and the requests after it carry tokens bound to the new certificate", { timeout: 60_000 }, async () => {
    await setup();
    const { identity, transport } = await transportFor();
    const client = tokenClient(transport, identity.keyPem);
    const buffer = openBuffer(dir, 64 * 1024 ** 2, cleanups);
    const seen = countStored(cloud.store);
    const items = numberedItems();
    const sender = newSender({ store: buffer, transport, url: cloud.url, tokens: client, pollIntervalMs: 20, retry: { initialDelayMs: 20, maxDelayMs: 200 } }, cleanups);
    sender.start();
    const next = await clientIdentity(cloud.ca, "line-1");
    const nextSerial = new X509Certificate(next.certPem).serialNumber;
    for (let i = 0; i < 60; i++) {
      if (i === 30) transport.rotate(next);
      buffer.append(items.batch(20));
      sender.wake();
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(await sender.drain(30_000)).toBe(true);
    expect(notExactlyOnce(seen, items.last)).toEqual([]);
    // The new certificate carried requests, with tokens bound to it (ingest checks cnf on each).
    expect(cloud.clientCertificates.get(nextSerial) ?? 0).toBeGreaterThan(0);
    expect((decodeJwt((await client.token()).reveal()).cnf as Record<string, string>)["x5t#S256"]).toBe(thumbprint(next.certPem));
    expect(cloud.auth.counts.tokensIssued).toBe(2);
  });
});

describe("logs", () => {
  it("never carry a token: fetch, renewal, 401 and refusal logged at trace level on both sides", async () => {
    let text = "";
    const sink = new Writable({
      write(chunk, _enc, done) {
        text += String(chunk);
        done();
      },
    });
    const logger = createLogger({ level: "trace", destination: sink });
    await setup({ tokenTtlSeconds: 2, logger });
    const identity = await clientIdentity(cloud.ca, "line-1");
    const transport = new Transport({ ...identity, caPem: cloud.ca.certPem, pins: [cloud.pin], logger });
    cleanups.push(() => transport.close());
    const client = tokenClient(transport, identity.keyPem, { logger, method: "private_key_jwt" });
    const seen = new Set<string>();
    seen.add((await client.token()).reveal());
    let refuse = 1;
    cloud.faults.status = () => (refuse-- > 0 ? 401 : undefined);
    const buffer = openBuffer(dir, 16 * 1024 ** 2, cleanups);
    buffer.append(numberedItems().batch(5));
    const sender = new Sender({ store: buffer, transport, url: cloud.url, instance: "line-1", tokens: client, pollIntervalMs: 20, logger });
    cleanups.push(() => sender.stop());
    sender.start();
    expect(await sender.drain(20_000)).toBe(true);
    await until("a renewal", () => client.health().renewals >= 2);
    seen.add((await client.token()).reveal());
    // A refused token goes to the devcloud's log too.
    const b = await transportFor();
    await ingest(b.transport, [...seen][0]!);
    expect(seen.size).toBeGreaterThan(1);
    expect(text).toMatch(/access token obtained/);
    expect(text).toMatch(/refused: token/);
    for (const token of seen) {
      expect(text).not.toContain(token);
      // Nor its claims or signature alone (the header is the same for every token of this server).
      for (const part of token.split(".").slice(1)) expect(text).not.toContain(part);
    }
  });
});
