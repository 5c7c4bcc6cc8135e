/**
 * The uplink through a real HTTP CONNECT proxy: values reach the devcloud (which demands our
 * client certificate) through the tunnel, with and without Basic authentication; the proxy's
 * refusals become clear errors without loss; the pin is checked end to end through the tunnel;
 * NO_PROXY and the precedence of config over environment.
 */
import { X509Certificate } from "node:crypto";
import net from "node:net";
import path from "node:path";
import { request, type Dispatcher } from "undici";
import { afterEach, describe, expect, it } from "vitest";
import { spkiPin } from "../../src/certs/pins.ts";
import { Secret } from "../../src/config/secrets.ts";
import { startDevCloud, type DevCloud } from "../../src/devcloud/server.ts";
import type { CertAuthority } from "../../src/certs/devca.ts";
import { silentLogger } from "../../src/log.ts";
import { toUplinkError } from "../../src/uplink/errors.ts";
import { KerfError } from "../../src/errors.ts";
import { describeProxy, resolveProxy, type ProxySettings } from "../../src/uplink/proxy.ts";
import { Transport } from "../../src/uplink/transport.ts";
import { startConnectProxy, type ConnectProxy } from "../helpers/connect-proxy.ts";
import { waitFor } from "../helpers/env.ts";
import { clientIdentity, newSender, numberedItems, openBuffer, runCleanups, startTlsServer, tempDir, type Cleanups } from "./helpers.ts";

const cleanup: Cleanups = [];
afterEach(() => runCleanups(cleanup));

async function cloud(): Promise<{ cloud: DevCloud; dir: string }> {
  const { dir, remove } = await tempDir("kerf-proxy-");
  cleanup.push(remove);
  const c = await startDevCloud({ dir: path.join(dir, "cloud"), logger: silentLogger(), requireTokens: false });
  cleanup.push(() => c.stop());
  return { cloud: c, dir };
}

async function proxyServer(auth: { username?: string; password?: string } = {}): Promise<ConnectProxy> {
  const p = await startConnectProxy(auth);
  cleanup.push(() => p.close());
  return p;
}

function configProxy(url: string, auth?: { username: string; password: string }): ProxySettings {
  return resolveProxy({ url }, auth && { username: new Secret(auth.username), password: new Secret(auth.password) }, {})!;
}

async function transport(ca: CertAuthority, pins: string[], proxy: ProxySettings | null) {
  const identity = await clientIdentity(ca, "line-1");
  const t = new Transport({ ...identity, caPem: ca.certPem, pins, logger: silentLogger(), proxy });
  cleanup.push(() => t.close());
  return { identity, transport: t };
}

/** One GET, or a POST with `body`: the status, or the KerfError the uplink would report. */
async function get(d: Dispatcher, url: string, body?: string): Promise<number | KerfError> {
  try {
    const res = await request(url, { dispatcher: d, ...(body === undefined ? {} : { method: "POST", body }) });
    await res.body.text();
    return res.statusCode;
  } catch (err) {
    return toUplinkError(err, new URL(url).hostname);
  }
}

const codeOf = (r: number | KerfError) => (typeof r === "number" ? r : r.code);
const serial = (pem: string) => new X509Certificate(pem).serialNumber;

describe("ingest through a CONNECT proxy", () => {
  for (const auth of [undefined, { username: "kerf", password: "s3cret:with colon" }]) {
    it(`delivers every value end to end with mTLS ${auth ? "with" : "without"} Basic authentication`, async () => {
      const { cloud: c, dir } = await cloud();
      const p = await proxyServer(auth);
      const { identity, transport: t } = await transport(c.ca, [c.pin], configProxy(p.url, auth));
      // What the cloud receives of proxy credentials: nothing, they are for the proxy alone.
      const seenByCloud: unknown[] = [];
      c.faults.status = (req) => {
        seenByCloud.push(req.headers["proxy-authorization"]);
        return undefined;
      };
      const buffer = openBuffer(dir, 64 * 1024 * 1024, cleanup);
      const items = numberedItems();
      for (let i = 0; i < 5; i++) buffer.append(items.batch(20));
      const sender = newSender({ store: buffer, transport: t, url: c.url, concurrency: 2, requestTimeoutMs: 10_000 }, cleanup);
      sender.start();
      expect(await sender.drain(20_000)).toBe(true);

      expect(c.store.counts()).toMatchObject({ items: 100, duplicateItems: 0 });
      expect(seenByCloud.length).toBeGreaterThan(0);
      expect(seenByCloud.every((h) => h === undefined)).toBe(true);
      // The cloud saw our client certificate: mutual TLS ran inside the tunnel.
      expect(c.clientCertificates.get(serial(identity.certPem))).toBeGreaterThan(0);
      const port = new URL(c.url).port;
      expect(p.connects.length).toBeGreaterThan(0);
      for (const connect of p.connects) {
        expect(connect).toMatchObject({ target: `127.0.0.1:${port}`, status: 200 });
        if (auth) expect(connect.authorization).toBe(`Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString("base64")}`);
        else expect(connect.authorization).toBeUndefined();
      }
    });
  }

  it("keeps working after a certificate rotation: the new pool goes through the proxy too", async () => {
    const { cloud: c, dir } = await cloud();
    const p = await proxyServer({ username: "u", password: "p" });
    const { identity, transport: t } = await transport(c.ca, [c.pin], configProxy(p.url, { username: "u", password: "p" }));
    const buffer = openBuffer(dir, 64 * 1024 * 1024, cleanup);
    const items = numberedItems();
    const sender = newSender({ store: buffer, transport: t, url: c.url, concurrency: 1, requestTimeoutMs: 10_000 }, cleanup);
    sender.start();
    buffer.append(items.batch(10));
    sender.wake();
    expect(await sender.drain(20_000)).toBe(true);
    const connectsBefore = p.connects.length;
    const second = await clientIdentity(c.ca, "line-1");
    t.rotate(second);
    buffer.append(items.batch(10));
    sender.wake();
    expect(await sender.drain(20_000)).toBe(true);
    expect(p.connects.length).toBe(connectsBefore + 1);
    expect(p.connects.at(-1)?.status).toBe(200);
    expect(c.clientCertificates.get(serial(identity.certPem))).toBe(1);
    expect(c.clientCertificates.get(serial(second.certPem))).toBe(1);
    expect(c.store.counts()).toMatchObject({ items: 20, duplicateItems: 0 });
  });
});

describe("proxy refusals: a clear error that names the proxy, retried without loss", () => {
  it("a wrong proxy password: UPLINK_PROXY_AUTH, no credentials in the message, the sender retries and health says why", async () => {
    const { cloud: c, dir } = await cloud();
    const p = await proxyServer({ username: "kerf", password: "right" });
    const proxy = configProxy(p.url, { username: "kerf", password: "wrong-password" });
    const { transport: t } = await transport(c.ca, [c.pin], proxy);

    const result = await get(t, `${c.url}/v1/machines/m1/latest`);
    expect(codeOf(result)).toBe("UPLINK_PROXY_AUTH");
    const err = result as KerfError;
    expect(err.message).toContain(p.url);
    expect(err.message).toContain("407");
    expect(err.message).toContain("cloud.proxy.passwordFile");
    expect(err.message).not.toContain("wrong-password");
    expect(err.context).toMatchObject({ host: "127.0.0.1", proxy: p.url });
    expect(p.connects.at(-1)?.status).toBe(407);

    const buffer = openBuffer(dir, 64 * 1024 * 1024, cleanup);
    buffer.append(numberedItems().batch(10));
    const sender = newSender({ store: buffer, transport: t, url: c.url, concurrency: 1, requestTimeoutMs: 10_000, retry: { initialDelayMs: 10, maxDelayMs: 50 } }, cleanup);
    sender.start();
    await waitFor("retries through the refusing proxy", () => sender.stats().retries >= 3, 20_000, 20);
    expect(sender.health()).toMatchObject({ lastErrorCode: "UPLINK_PROXY_AUTH" });
    expect(sender.health().lastError).toContain(p.url);
    expect(buffer.stats()).toMatchObject({ items: 10, droppedItems: 0 });
    expect(c.store.counts().items).toBe(0);
  });

  it("no credentials for a proxy that demands them: UPLINK_PROXY_AUTH saying to configure them", async () => {
    const { cloud: c } = await cloud();
    const p = await proxyServer({ username: "kerf", password: "right" });
    const { transport: t } = await transport(c.ca, [c.pin], configProxy(p.url));
    const result = await get(t, `${c.url}/v1/machines/m1/latest`);
    expect(codeOf(result)).toBe("UPLINK_PROXY_AUTH");
    expect((result as KerfError).message).toContain("no credentials are configured");
  });

  it("a proxy that refuses the tunnel (403: UPLINK_PROXY_REFUSED) or cannot open it (502: UPLINK_PROXY), naming proxy and target", async () => {
    const { cloud: c } = await cloud();
    const p = await proxyServer();
    const { transport: t } = await transport(c.ca, [c.pin], configProxy(p.url));
    for (const [status, code] of [[403, "UPLINK_PROXY_REFUSED"], [502, "UPLINK_PROXY"]] as const) {
      p.refuseWith = status;
      const result = await get(t, `${c.url}/v1/machines/m1/latest`);
      expect(codeOf(result)).toBe(code);
      expect((result as KerfError).message).toContain(p.url);
      expect((result as KerfError).message).toContain(`HTTP ${status}`);
      expect((result as KerfError).message).toContain(new URL(c.url).host);
    }
  });

  it("a proxy that takes the connection but never answers the CONNECT: UPLINK_PROXY after the connect timeout", async () => {
    const { cloud: c } = await cloud();
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((socket) => sockets.add(socket.on("error", () => undefined)));
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    cleanup.push(() => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      silent.close(() => r());
    }));
    const url = `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
    const identity = await clientIdentity(c.ca, "line-1");
    const t = new Transport({ ...identity, caPem: c.ca.certPem, pins: [c.pin], logger: silentLogger(), proxy: configProxy(url), connectTimeoutMs: 300 });
    cleanup.push(() => t.destroy());
    const result = await get(t, `${c.url}/v1/machines/m1/latest`);
    expect(codeOf(result)).toBe("UPLINK_PROXY");
    expect((result as KerfError).message).toContain(`cannot reach the proxy ${url}`);
  });

  it("an unreachable proxy: UPLINK_PROXY naming the proxy, not a cloud network error", async () => {
    const { cloud: c } = await cloud();
    const p = await startConnectProxy();
    await p.close();
    const { transport: t } = await transport(c.ca, [c.pin], configProxy(p.url));
    const result = await get(t, `${c.url}/v1/machines/m1/latest`);
    expect(codeOf(result)).toBe("UPLINK_PROXY");
    expect((result as KerfError).message).toContain(`cannot reach the proxy ${p.url}`);
    expect((result as KerfError).message).toContain("ECONNREFUSED");
    expect(c.clientCertificates.size).toBe(0);
  });
});

describe("pinning through the proxy", () => {
  /** A raw TLS server with a leaf from the devcloud's CA, a proxy, and a transport through it with the pins `pinsFor` picks. */
  async function behindProxy(leafOptions: Parameters<CertAuthority["issueServerCert"]>[0], pinsFor: (leafPem: string, cloudPin: string) => string[]) {
    const { cloud: c } = await cloud();
    const leaf = await c.ca.issueServerCert(leafOptions);
    const s = await startTlsServer({ chainPem: leaf.chainPem, keyPem: leaf.keyPem });
    cleanup.push(() => s.close());
    const p = await proxyServer();
    const { transport: t } = await transport(c.ca, pinsFor(leaf.certPem, c.pin), configProxy(p.url));
    return { s, p, result: await get(t, `https://127.0.0.1:${s.port}/v1/ingest`, "a request body that must not leave") };
  }

  it("a server with a valid chain but an unpinned key is refused through the tunnel, and no request byte reaches it", async () => {
    const { s, p, result } = await behindProxy({ ips: ["127.0.0.1"] }, (_leaf, cloudPin) => [cloudPin]);
    expect(codeOf(result)).toBe("UPLINK_PIN_MISMATCH");
    // The tunnel was opened and the handshake ran through it, and then the server received
    // nothing: the request never left.
    expect(p.connects).toEqual([{ target: `127.0.0.1:${s.port}`, authorization: undefined, status: 200 }]);
    expect(s.connections).toBe(1);
    expect(s.appBytes).toBe(0);
    expect(s.requests).toBe(0);
  });

  it("the same server is accepted through the tunnel when its key is pinned (the control)", async () => {
    const { s, p, result } = await behindProxy({ ips: ["127.0.0.1"] }, (leaf) => [spkiPin(leaf)]);
    expect(result).toBe(200);
    expect(s.requests).toBe(1);
    expect(s.appBytes).toBeGreaterThan("a request body that must not leave".length);
    expect(p.connects).toHaveLength(1);
  });

  it("a pinned key on a certificate for another host name is refused through the tunnel", async () => {
    const { s, p, result } = await behindProxy({ dnsNames: ["cloud.example.test"] }, (leaf) => [spkiPin(leaf)]);
    expect(codeOf(result)).toBe("UPLINK_TLS");
    expect(p.connects).toHaveLength(1);
    expect(s.appBytes).toBe(0);
  });
});

describe("which proxy: NO_PROXY and config over environment", () => {
  it("NO_PROXY entries send matching hosts direct, others through the proxy", async () => {
    const { cloud: c } = await cloud();
    const p = await proxyServer();
    const port = new URL(c.url).port;
    const cases: [string, boolean][] = [
      ["127.0.0.1", false],
      ["*", false],
      [`example.test, 127.0.0.1:${port}`, false],
      [`127.0.0.1:${Number(port) + 1}`, true],
      ["localhost", true],
      ["", true],
    ];
    for (const [noProxy, proxied] of cases) {
      const proxy = resolveProxy(undefined, undefined, { HTTPS_PROXY: p.url, NO_PROXY: noProxy });
      const { transport: t } = await transport(c.ca, [c.pin], proxy);
      const before = p.connects.length;
      expect(await get(t, `${c.url}/v1/machines/m1/latest`)).toBeTypeOf("number");
      expect({ noProxy, proxied: p.connects.length > before }).toEqual({ noProxy, proxied });
    }
  });

  it("NO_PROXY matches a domain and its subdomains, as curl does", async () => {
    // The devcloud's certificate names localhost too.
    const { cloud: c } = await cloud();
    const url = c.url.replace("127.0.0.1", "localhost");
    const p = await proxyServer();
    for (const [noProxy, proxied] of [["localhost", false], [".localhost", false], ["host", true], ["sub.localhost", true]] as const) {
      const { transport: t } = await transport(c.ca, [c.pin], resolveProxy(undefined, undefined, { https_proxy: p.url, no_proxy: noProxy }));
      const before = p.connects.length;
      expect(await get(t, `${url}/v1/machines/m1/latest`)).toBeTypeOf("number");
      expect({ noProxy, proxied: p.connects.length > before }).toEqual({ noProxy, proxied });
    }
  });

  it("cloud.proxy in the config wins over HTTPS_PROXY, and NO_PROXY then does not apply", async () => {
    const { cloud: c } = await cloud();
    const fromEnv = await proxyServer();
    const fromConfig = await proxyServer();
    const env = { HTTPS_PROXY: fromEnv.url, NO_PROXY: "127.0.0.1" };
    const proxy = resolveProxy({ url: fromConfig.url }, undefined, env);
    expect(describeProxy(proxy, env)).toBe(
      `uplink connects through the HTTP CONNECT proxy ${fromConfig.url} without authentication, from cloud.proxy in the config (it wins over HTTPS_PROXY in the environment); TLS with the cloud (client certificate, pins) runs end to end through the tunnel`,
    );
    const { transport: t } = await transport(c.ca, [c.pin], proxy);
    expect(await get(t, `${c.url}/v1/machines/m1/latest`)).toBeTypeOf("number");
    expect(fromConfig.connects).toHaveLength(1);
    expect(fromEnv.connects).toHaveLength(0);

    const { transport: envOnly } = await transport(c.ca, [c.pin], resolveProxy(undefined, undefined, { HTTPS_PROXY: fromEnv.url }));
    expect(await get(envOnly, `${c.url}/v1/machines/m1/latest`)).toBeTypeOf("number");
    expect(fromEnv.connects).toHaveLength(1);
  });
});

describe("resolveProxy", () => {
  it("reads the environment as curl does: lower case first, empty is unset, no scheme means http, credentials become secrets", () => {
    expect(resolveProxy(undefined, undefined, {})).toBeNull();
    expect(resolveProxy(undefined, undefined, { HTTPS_PROXY: "" })).toBeNull();
    expect(resolveProxy(undefined, undefined, { HTTP_PROXY: "http://p:3128" })).toBeNull();
    expect(resolveProxy(undefined, undefined, { https_proxy: "http://lower:3128", HTTPS_PROXY: "http://upper:3128" })?.url).toBe("http://lower:3128");
    expect(resolveProxy(undefined, undefined, { https_proxy: "", HTTPS_PROXY: "http://upper:3128" })?.url).toBe("http://upper:3128");
    expect(resolveProxy(undefined, undefined, { HTTPS_PROXY: "proxy.corp:3128" })?.url).toBe("http://proxy.corp:3128");
    expect(resolveProxy(undefined, undefined, { HTTPS_PROXY: "http://proxy.corp" })?.url).toBe("http://proxy.corp:1080");
    const withAuth = resolveProxy(undefined, undefined, { HTTPS_PROXY: "http://us%40er:p%3Ass@proxy.corp:8080", no_proxy: "a", NO_PROXY: "b" })!;
    expect(withAuth).toMatchObject({ url: "http://proxy.corp:8080", noProxy: "a", source: "environment" });
    expect([withAuth.username?.reveal(), withAuth.password?.reveal()]).toEqual(["us@er", "p:ss"]);
    expect(JSON.stringify(withAuth)).not.toContain("p:ss");
    expect(describeProxy(withAuth, {})).not.toContain("p%3Ass");
    expect(() => resolveProxy(undefined, undefined, { HTTPS_PROXY: "socks5://user:pw@p:1080" })).toThrow(/HTTPS_PROXY is not a proxy URL/);
    expect(() => resolveProxy(undefined, undefined, { HTTPS_PROXY: "socks5://user:pw@p:1080" })).not.toThrow(/pw/);
  });

  it("a lone % in the environment's proxy password is a clear error naming the variable, not its value", () => {
    let err: unknown;
    try {
      resolveProxy(undefined, undefined, { HTTPS_PROXY: "http://u:50%@proxy.corp:3128" });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KerfError);
    expect((err as KerfError).code).toBe("CONFIG_INVALID");
    expect((err as KerfError).message).toMatch(/^environment variable HTTPS_PROXY: the proxy password is not valid percent-encoding \(write a literal % as %25\)/);
    expect((err as KerfError).message).not.toContain("50%");
  });
});
