/**
 * SPKI pinning against real TLS servers (RFC 7469 practice): what must be refused, what must
 * be accepted, and that no request byte leaves before the pin check passed.
 */
import { generateKeyPairSync } from "node:crypto";
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { once } from "node:events";
import tls from "node:tls";
import { request, Agent, type Dispatcher } from "undici";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createDevCa, type DevCa } from "../../src/certs/devca.ts";
import { publicKeyPin, spkiPin } from "../../src/certs/pins.ts";
import { isKerfError, type KerfError } from "../../src/errors.ts";
import { silentLogger } from "../../src/log.ts";
import { checkPinnedServerIdentity, Transport } from "../../src/uplink/transport.ts";
import { toUplinkError } from "../../src/uplink/errors.ts";
import { resolveProxy, type ProxySettings } from "../../src/uplink/proxy.ts";
import { startConnectProxy } from "../helpers/connect-proxy.ts";
import { clientIdentity, startTlsServer, tempDir, type TestTlsServer } from "./helpers.ts";

const unrelatedPin = "sha256/" + Buffer.alloc(32, 7).toString("base64");

let ca: DevCa;
let client: { certPem: string; keyPem: string };
let removeDir: () => Promise<void>;
const cleanup: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  const tmp = await tempDir("kerf-pin-");
  removeDir = tmp.remove;
  ca = await createDevCa(tmp.dir);
  client = await clientIdentity(ca, "line-1");
});
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!().catch(() => undefined);
});
afterAll(() => removeDir());

async function server(chainPem: string, keyPem: string, extra: Parameters<typeof startTlsServer>[0] extends infer T ? Partial<T> : never = {}): Promise<TestTlsServer> {
  const s = await startTlsServer({ chainPem, keyPem, ...extra });
  cleanup.push(() => s.close());
  return s;
}

function agent(pins: string[], proxy: ProxySettings | null = null): Dispatcher {
  const a = new Transport({ ...client, caPem: ca.certPem, pins, logger: silentLogger(), proxy });
  cleanup.push(() => a.close());
  return a;
}

/** One request through the agent (a GET, or a POST with `body`): the status, or the KerfError the uplink would report. */
async function get(a: Dispatcher, port: number, host = "127.0.0.1", path = "/probe", body?: string): Promise<number | KerfError> {
  try {
    const res = await request(`https://${host}:${port}${path}`, { dispatcher: a, ...(body === undefined ? {} : { method: "POST", body }) });
    await res.body.text();
    return res.statusCode;
  } catch (err) {
    return toUplinkError(err, host);
  }
}

/** The server presents `cert` from now on; its open connections close, so the next request needs a new handshake. */
async function switchCert(a: Dispatcher, s: TestTlsServer, cert: { chainPem: string; keyPem: string }): Promise<void> {
  s.setCert(cert.chainPem, cert.keyPem);
  const disconnected = once(a, "disconnect");
  s.dropConnections();
  await disconnected;
}

function codeOf(result: number | KerfError): string | number {
  return typeof result === "number" ? result : result.code;
}

describe("pins that must be accepted", () => {
  it("the leaf's own pin (EC key)", async () => {
    const leaf = await ca.issueServerCert({ ips: ["127.0.0.1"] });
    const s = await server(leaf.chainPem, leaf.keyPem);
    expect(await get(agent([spkiPin(leaf.certPem)]), s.port)).toBe(200);
    expect(s.appBytes).toBeGreaterThan(0);
  });

  it("the leaf's own pin (RSA key)", async () => {
    const leaf = await ca.issueServerCert({ ips: ["127.0.0.1"], keyType: "rsa" });
    const s = await server(leaf.chainPem, leaf.keyPem);
    expect(await get(agent([spkiPin(leaf.certPem)]), s.port)).toBe(200);
  });

  it("a backup pin first that matches nothing, the current pin second", async () => {
    const leaf = await ca.issueServerCert({ ips: ["127.0.0.1"] });
    const s = await server(leaf.chainPem, leaf.keyPem);
    expect(await get(agent([unrelatedPin, spkiPin(leaf.certPem)]), s.port)).toBe(200);
  });

  it("only the intermediate CA's key pinned (CA → intermediate → leaf)", async () => {
    const intermediate = await ca.createIntermediate();
    const leaf = await intermediate.issueServerCert({ ips: ["127.0.0.1"] });
    expect(leaf.chainPem).toContain(intermediate.certPem.trim());
    const s = await server(leaf.chainPem, leaf.keyPem);
    expect(await get(agent([spkiPin(intermediate.certPem)]), s.port)).toBe(200);
  });

  for (const keyType of ["ec", "rsa"] as const) {
    it(`a backup pin not in the current chain (${keyType.toUpperCase()}): the cloud moves to the backup key and stays reachable`, async () => {
      // The backup key exists before any certificate for it: its pin comes from the key alone.
      const backup = keyType === "ec" ? generateKeyPairSync("ec", { namedCurve: "P-256" }) : generateKeyPairSync("rsa", { modulusLength: 2048 });
      const backupKeyPem = backup.privateKey.export({ type: "pkcs8", format: "pem" }) as string;
      const current = await ca.issueServerCert({ ips: ["127.0.0.1"] });
      const s = await server(current.chainPem, current.keyPem);
      const a = agent([spkiPin(current.certPem), publicKeyPin(backupKeyPem)]);
      expect(await get(a, s.port)).toBe(200);
      const moved = await ca.issueServerCert({ ips: ["127.0.0.1"], keyPem: backupKeyPem });
      await switchCert(a, s, moved);
      expect(await get(a, s.port)).toBe(200);
      expect(s.handshakes).toBe(2);
      // The control: without the backup pin, the moved cloud is refused.
      expect(codeOf(await get(agent([spkiPin(current.certPem)]), s.port))).toBe("UPLINK_PIN_MISMATCH");
    });
  }

  it("a renewed leaf that keeps its key keeps its pin", async () => {
    const first = await ca.issueServerCert({ ips: ["127.0.0.1"] });
    const renewed = await ca.issueServerCert({ ips: ["127.0.0.1"], keyPem: first.keyPem, notAfter: new Date(Date.now() + 800 * 86400_000) });
    expect(renewed.certPem).not.toBe(first.certPem);
    const s = await server(first.chainPem, first.keyPem);
    const a = agent([spkiPin(first.certPem)]);
    expect(await get(a, s.port)).toBe(200);
    await switchCert(a, s, renewed);
    expect(await get(a, s.port)).toBe(200);
    expect(s.handshakes).toBe(2);
  });
});

describe("servers that must be refused", () => {
  it("a valid CA chain with an unpinned key: UPLINK_PIN_MISMATCH naming host and pins, and no request byte sent", async () => {
    const pinned = await ca.issueServerCert({ ips: ["127.0.0.1"] });
    const impostor = await ca.issueServerCert({ ips: ["127.0.0.1"] });
    const s = await server(impostor.chainPem, impostor.keyPem);
    const result = await get(agent([spkiPin(pinned.certPem), unrelatedPin]), s.port, "127.0.0.1", "/v1/ingest", "a request body that must not leave");
    expect(isKerfError(result, "UPLINK_PIN_MISMATCH")).toBe(true);
    const message = (result as KerfError).message;
    expect(message).toContain("127.0.0.1");
    expect(message).toContain(spkiPin(impostor.certPem));
    expect(message).toContain(spkiPin(pinned.certPem));
    expect(message).toContain(unrelatedPin);
    expect(s.connections).toBe(1);
    expect(s.appBytes).toBe(0);
    expect(s.requests).toBe(0);
  });

  it("an RSA server whose key is not pinned", async () => {
    const leaf = await ca.issueServerCert({ ips: ["127.0.0.1"], keyType: "rsa" });
    const s = await server(leaf.chainPem, leaf.keyPem);
    expect(codeOf(await get(agent([unrelatedPin]), s.port))).toBe("UPLINK_PIN_MISMATCH");
    expect(s.appBytes).toBe(0);
  });

  it("a pinned key on a certificate for another host name", async () => {
    const leaf = await ca.issueServerCert({ dnsNames: ["cloud.example.test"] });
    const s = await server(leaf.chainPem, leaf.keyPem);
    const result = await get(agent([spkiPin(leaf.certPem)]), s.port);
    expect(codeOf(result)).toBe("UPLINK_TLS");
    expect((result as KerfError).message).toContain("127.0.0.1");
    expect(s.appBytes).toBe(0);
  });

  it("a server that offers at most TLS 1.1", async () => {
    const leaf = await ca.issueServerCert({ ips: ["127.0.0.1"] });
    const s = await server(leaf.chainPem, leaf.keyPem, { minVersion: "TLSv1", maxVersion: "TLSv1.1", ciphers: "DEFAULT@SECLEVEL=0" });
    expect(codeOf(await get(agent([spkiPin(leaf.certPem)]), s.port))).toBe("UPLINK_TLS");
    expect(s.appBytes).toBe(0);
  });

  it("a second connection to the same cloud is pinned again: TLS session resumption cannot bypass the pin", async () => {
    const pinned = await ca.issueServerCert({ ips: ["127.0.0.1"] });
    const impostor = await ca.issueServerCert({ ips: ["127.0.0.1"] });
    const pins = new Set([spkiPin(pinned.certPem)]);
    // Control: the same pin check on an agent that caches TLS sessions, as undici does by default.
    const control = new Agent({ allowH2: false, connect: { ...client, ca: ca.certPem, checkServerIdentity: checkPinnedServerIdentity(pins, silentLogger()) } });
    cleanup.push(() => control.close());

    for (const [name, a] of [["control", control], ["ours", agent([...pins])]] as const) {
      const s = await server(pinned.chainPem, pinned.keyPem);
      // A full exchange first: the client has read the session ticket once it has the response.
      expect(await get(a, s.port)).toBe(200);
      // A request the server holds keeps one connection busy, so the agent's pool (and its
      // session cache) stays alive; with the idle connections closed, the next request must
      // open a new connection within that pool.
      const held = get(a, s.port, "127.0.0.1", "/hold");
      await until(() => s.requests === 2);
      const connectionsBefore = s.connections;
      const disconnected = s.connections > 1 ? once(a, "disconnect") : Promise.resolve();
      s.dropIdleConnections();
      await disconnected;
      // The server switches to an unpinned key under the same CA but keeps its session ticket keys.
      s.setCert(impostor.chainPem, impostor.keyPem);
      const bytesBefore = s.appBytes;
      const resumedBefore = s.resumed;
      const second = await get(a, s.port);
      s.releaseHeld();
      expect(await held).toBe(200);
      if (name === "control") {
        // The control resumed its session, Node skipped checkServerIdentity and the impostor got
        // the request. This is the bypass that maxCachedSessions: 0 closes (library-notes.md).
        expect(s.resumed - resumedBefore).toBe(1);
        expect(second).toBe(200);
      } else {
        expect(s.connections).toBe(connectionsBefore + 1);
        expect(s.resumed).toBe(0);
        expect(codeOf(second)).toBe("UPLINK_PIN_MISMATCH");
        expect(s.appBytes).toBe(bytesBefore);
      }
    }
  });
});

describe("every new TLS connection checks the pin: session resumption cannot bypass it", () => {
  for (const via of ["direct", "through a CONNECT proxy"] as const) {
    it(`${via}: each new connection is a full handshake, never resumed, and pinned`, async () => {
      const pinned = await ca.issueServerCert({ ips: ["127.0.0.1"] });
      const impostor = await ca.issueServerCert({ ips: ["127.0.0.1"] });
      const s = await server(pinned.chainPem, pinned.keyPem);
      let proxy: ProxySettings | null = null;
      if (via !== "direct") {
        const p = await startConnectProxy();
        cleanup.push(() => p.close());
        proxy = resolveProxy({ url: p.url }, undefined, {});
      }
      const a = agent([spkiPin(pinned.certPem)], proxy);
      // A held request keeps one connection, and so the pool with its would-be session cache,
      // alive while the rounds below each need a new connection.
      const held = get(a, s.port, "127.0.0.1", "/hold");
      await until(() => s.requests === 1);
      // The server alternates between the pinned key and an unpinned one under the same CA,
      // keeping its ticket keys: a resumed session would skip the certificate (and the pin).
      const results: (number | string)[] = [];
      for (let round = 0; round < 6; round++) {
        const cert = round % 2 === 0 ? pinned : impostor;
        s.setCert(cert.chainPem, cert.keyPem);
        const result = codeOf(await get(a, s.port, "127.0.0.1", "/probe", `round ${round}`));
        results.push(result);
        if (result === 200) {
          // Close the idle connection, so that the next round needs a new one.
          const disconnected = once(a, "disconnect");
          s.dropIdleConnections();
          await disconnected;
        }
      }
      s.releaseHeld();
      expect(await held).toBe(200);
      expect(results).toEqual([200, "UPLINK_PIN_MISMATCH", 200, "UPLINK_PIN_MISMATCH", 200, "UPLINK_PIN_MISMATCH"]);
      // Every connection the server completed (the held one and the three pinned rounds) was a
      // full handshake; the refused ones never finished theirs.
      expect(s.resumed).toBe(0);
      expect(s.handshakes).toBe(4);
      expect(s.requests).toBe(4);
    });
  }

  it("a new pin set refuses a server for which a resumable session exists", async () => {
    const leaf = await ca.issueServerCert({ ips: ["127.0.0.1"] });
    const s = await server(leaf.chainPem, leaf.keyPem);
    // The session tickets the first transport's connections receive, taken from its sockets.
    const sessions: Buffer[] = [];
    const onConnected = (msg: unknown) => (msg as { socket: tls.TLSSocket }).socket.on("session", (session: Buffer) => sessions.push(session));
    subscribe("undici:client:connected", onConnected);
    cleanup.push(async () => unsubscribe("undici:client:connected", onConnected));
    expect(await get(agent([spkiPin(leaf.certPem)]), s.port)).toBe(200);
    await until(() => sessions.length > 0);

    // The pin set no longer holds the server's key (a rotation that dropped it, or an attacker's key).
    const newPins = new Set([unrelatedPin]);
    // The control: a connection that resumes the old session is accepted without any pin check,
    // because Node does not call checkServerIdentity on resumption.
    const control = tls.connect({ port: s.port, host: "127.0.0.1", ...client, ca: ca.certPem, session: sessions.at(-1)!, checkServerIdentity: checkPinnedServerIdentity(newPins, silentLogger()) });
    cleanup.push(async () => control.destroy());
    await once(control, "secureConnect");
    expect(control.isSessionReused()).toBe(true);
    await until(() => s.resumed === 1);
    control.destroy();

    const bytesBefore = s.appBytes;
    const result = await get(agent([...newPins]), s.port, "127.0.0.1", "/v1/ingest", "must not leave");
    expect(codeOf(result)).toBe("UPLINK_PIN_MISMATCH");
    expect(s.appBytes).toBe(bytesBefore);
    expect(s.resumed).toBe(1);
  });
});

async function until(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe("configuration", () => {
  it("refuses an empty or malformed pin list at creation", () => {
    expect(() => new Transport({ ...client, pins: [], logger: silentLogger() })).toThrow(/at least one SPKI pin/);
    expect(() => new Transport({ ...client, pins: ["sha256/short"], logger: silentLogger() })).toThrow(/invalid SPKI pin 'sha256\/short'/);
  });
});
