/**
 * The reference cloud: an HTTPS ingest endpoint that only clients with a certificate from its
 * dev CA can reach, implementing docs/protocol.md. The demo, the tests and the benchmark run
 * the connector against it.
 */
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { isIP } from "node:net";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";
import { promisify } from "node:util";
import { gunzip as gunzipCallback } from "node:zlib";
import { createDevCa, type DevCa } from "../certs/devca.ts";
import { writeFileAtomic } from "../certs/files.ts";
import { spkiPin } from "../certs/pins.ts";
import type { Logger } from "../log.ts";
import { itemCount } from "../message.ts";
import { startAuthServer, TokenRefused, type AuthServer } from "./auth.ts";
import { openCommandSigner, type CommandSigner } from "./command-signer.ts";
import { CommandHub } from "./commands.ts";
import { partnerClients } from "./grants.ts";
import { startPartnerServer, type PartnerServer } from "./partner.ts";
import { parseEnvelope, type Envelope } from "./envelope.ts";
import { startEstServer, type EstServer } from "./est.ts";
import type { Hostile } from "./hostile.ts";
import { MemoryStore } from "./memory-store.ts";
import { CloudStore } from "./store.ts";

const gunzip = promisify(gunzipCallback);

/** What a test may inject: a status (and headers) instead of the normal answer. */
export type FaultAnswer = number | { status: number; headers?: Record<string, string>; body?: string } | undefined;

export interface DevCloudFaults {
  /** Answer 503 to the next N ingest requests (counted down). */
  failNext?: number;
  /** Decides an answer for a valid ingest request before it is stored; undefined = normal handling. */
  status?: (req: IncomingMessage, envelope: Envelope) => FaultAnswer;
  /** Answer 503 to the next N command results (POST /v1/commands/<jti>/result), counted down. */
  failCommandResults?: number;
  /** Seeded random faults (hostile.ts), after `failNext` and `status`. */
  hostile?: Hostile;
  /** Answers a request for the TUF repository itself (returns true) instead of serving the file: an attacker's server. */
  tuf?: (req: IncomingMessage, res: ServerResponse, file: { kind: "metadata" | "targets"; name: string }) => boolean;
}

export interface DevCloudOptions {
  /** State directory: CA, server key, SQLite data. Reusing it keeps CA, pin and data. */
  dir: string;
  port?: number;
  host?: string;
  logger: Logger;
  faults?: DevCloudFaults;
  /** "memory" for the benchmark: no SQLite, nothing kept across a restart. Default "sqlite". */
  storage?: "sqlite" | "memory";
  /** With storage "memory": which data points keep their history (default all). */
  keep?: (key: string) => boolean;
  /** Largest request body, compressed and decompressed. Default 16 MiB. */
  maxBodyBytes?: number;
  /** Ingest demands a bearer token from the authorization server (auth.ts). Default true. */
  requireTokens?: boolean;
  /** Lifetime of the access tokens the authorization server issues. Default 300 s. */
  tokenTtlSeconds?: number;
  /** Port of the authorization server (0 = any); a restart that keeps `port` keeps this too. */
  authPort?: number;
  /** Lifetime of the client certificates its EST server issues. Default one year. */
  certTtlSeconds?: number;
  /** Port of the EST listener. Default 0 (any free one). */
  estPort?: number;
  /** A TUF repository directory (metadata/, targets/; see src/release/repo.ts) served at /tuf/. */
  tufDir?: string;
  /** Port of the partner API (0 = any); a restart that keeps `port` keeps this too. */
  partnerPort?: number;
}

export interface DevCloud {
  url: string;
  /** Its state directory (CA, keys, data, partners.json, grants.json). */
  dir: string;
  port: number;
  host: string;
  ca: DevCa;
  serverCertPem: string;
  /** SPKI pin of the server key (stable across restarts on the same dir). */
  pin: string;
  store: CloudStore | MemoryStore;
  /** Live: tests may change it while the cloud runs. */
  faults: DevCloudFaults;
  /** Ingest requests being handled now, and the most at once so far (a test may reset `peak`). */
  inFlight: { now: number; peak: number };
  /** Ingest requests per client certificate (its serial number, hex): who came with which identity. */
  clientCertificates: Map<string, number>;
  /** The authorization server (its own port, same certificate and pin). */
  auth: AuthServer;
  /** Whether ingest demands a token, how many ingest requests it refused with 401, and the requests whose bound token it accepted, per client certificate (serial, hex). */
  tokens: { required: boolean; refused: number; acceptedBySerial: Map<string, number> };
  /** Client certificates (serial, hex) whose connections the ingest closes right after the handshake: a certificate the cloud has revoked. */
  refusedClientSerials: Set<string>;
  /** The EST enrolment server (RFC 7030) on its own port, with the same server certificate and pin. */
  est: EstServer;
  /** The TUF repository served at /tuf/metadata/ and /tuf/targets/ (live: a test may point it elsewhere). */
  tuf: { dir: string | undefined };
  /** Remote commands (issue 16): the queue and states, and the audit rows connectors sent. */
  commands: CommandHub;
  /** Signs accepted commands; its public JWK set is in `commandKeysFile` (for a connector's commands.keys). */
  commandSigner: CommandSigner;
  commandKeysFile: string;
  /** The partner API for OAuth2-authorized partner apps (own port, no client certificates). */
  partner: PartnerServer;
  stop(): Promise<void>;
}

export async function startDevCloud(options: DevCloudOptions): Promise<DevCloud> {
  const host = options.host ?? "127.0.0.1";
  const log = options.logger;
  const maxBodyBytes = options.maxBodyBytes ?? 16 * 1024 * 1024;
  mkdirSync(options.dir, { recursive: true, mode: 0o700 });
  const ca = await createDevCa(options.dir, "CN=Kerf Devcloud CA");
  const server = await serverCertificate(ca, options.dir, host);
  const store = options.storage === "memory" ? new MemoryStore(options.keep ? { keep: options.keep } : {}) : new CloudStore(join(options.dir, "devcloud.db"));
  const faults: DevCloudFaults = options.faults ?? {};
  const inFlight = { now: 0, peak: 0 };
  const clientCertificates = new Map<string, number>();
  const tokens = { required: options.requireTokens ?? true, refused: 0, acceptedBySerial: new Map<string, number>() };
  const baseUrl = (port: number) => `https://${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
  const refusedClientSerials = new Set<string>();
  const tuf = { dir: options.tufDir };
  const commands = new CommandHub(log);
  const commandSigner = openCommandSigner(options.dir);
  // the demo partner apps exist from the start, so their partners.json can be read at once
  partnerClients(options.dir);

  const https: Server = createServer(
    {
      cert: server.certPem,
      key: server.keyPem,
      ca: ca.certPem,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: "TLSv1.2",
    },
    (req, res) => {
      handle(req, res).catch((err) => {
        log.error({ err }, "devcloud: request failed");
        if (!res.headersSent) send(res, 500, { error: "internal error" });
        else res.destroy();
      });
    },
  );
  // closeAllConnections() knows only connections past the TLS handshake; one still in it would
  // keep close() waiting up to the handshake timeout (120 s), so stop() destroys every socket.
  const sockets = new Set<Socket>();
  https.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  https.on("secureConnection", (socket: TLSSocket) => {
    if (refusedClientSerials.has(socket.getPeerCertificate().serialNumber ?? "")) socket.destroy();
  });
  https.on("tlsClientError", (err) => log.info({ code: (err as NodeJS.ErrnoException).code, msg: err.message }, "devcloud: TLS client refused"));

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "https://devcloud");
    const cn = clientName(req);
    if (url.pathname === "/v1/ingest") {
      if (req.method !== "POST") return send(res, 405, { error: `use POST for ${url.pathname}` }, { allow: "POST" });
      store.countRequest();
      const serial = (req.socket as TLSSocket).getPeerCertificate().serialNumber ?? "";
      clientCertificates.set(serial, (clientCertificates.get(serial) ?? 0) + 1);
      inFlight.peak = Math.max(inFlight.peak, ++inFlight.now);
      res.once("close", () => inFlight.now--);
      if (tokens.required && !(await authorized(req, res, cn))) return;
      return ingest(req, res, cn);
    }
    if (url.pathname === "/v1/commands" || url.pathname === "/v1/audit" || url.pathname.startsWith("/v1/commands/")) return connectorCommands(req, res, url, cn);
    const t = /^\/tuf\/(metadata|targets)\/([^/]+)$/.exec(url.pathname);
    if (t && req.method === "GET") return serveTuf(req, res, t[1] as "metadata" | "targets", decodeURIComponent(t[2]!));
    const m = /^\/v1\/machines\/([^/]+)\/(latest|items)$/.exec(url.pathname);
    if (m && req.method === "GET") {
      const machine = decodeURIComponent(m[1]!);
      if (m[2] === "latest") return send(res, 200, { machine, values: store.latest(machine) });
      const key = url.searchParams.get("key");
      if (!key) return send(res, 400, { error: "query parameter 'key' is required" });
      return send(res, 200, { machine, key, items: store.items(machine, key) });
    }
    return send(res, 404, { error: `no route ${req.method} ${url.pathname}` });
  }

  /** The connector's side of remote commands: the long poll, results, audit rows; with its bearer token as for ingest. */
  async function connectorCommands(req: IncomingMessage, res: ServerResponse, url: URL, cn: string): Promise<void> {
    if (tokens.required && !(await authorized(req, res, cn))) return;
    if (url.pathname === "/v1/commands" && req.method === "GET") return commands.poll(res, cn, url);
    const m = /^\/v1\/commands\/([^/]+)\/result$/.exec(url.pathname);
    if ((m || url.pathname === "/v1/audit") && req.method === "POST") {
      const raw = await readBody(req, maxBodyBytes);
      if (raw === "aborted") return;
      if (raw === "too_large") return sendAndClose(req, res, 413, { error: `body exceeds ${maxBodyBytes} bytes` });
      let body: unknown;
      try {
        body = JSON.parse(raw.toString("utf8"));
      } catch (err) {
        return send(res, 400, { error: `body is not valid JSON: ${(err as Error).message}` });
      }
      if (!m) {
        const answer = commands.receiveAudit(cn, body);
        return send(res, answer.status, answer.body);
      }
      if (faults.failCommandResults && faults.failCommandResults > 0) {
        faults.failCommandResults--;
        return send(res, 503, { error: "injected fault" });
      }
      const answer = commands.result(cn, decodeURIComponent(m[1]!), body);
      if (answer.status === 204) {
        res.writeHead(204);
        return void res.end();
      }
      return send(res, answer.status, { error: answer.error });
    }
    return send(res, 405, { error: `no route ${req.method} ${url.pathname}` });
  }

  /** A file of the TUF repository, as it is on disk: the client verifies everything, the server nothing. */
  function serveTuf(req: IncomingMessage, res: ServerResponse, kind: "metadata" | "targets", name: string): void {
    if (faults.tuf?.(req, res, { kind, name })) return;
    if (!tuf.dir || name.startsWith(".") || name.includes("/") || name.includes("\\")) return send(res, 404, { error: `no TUF file ${kind}/${name}` });
    const file = join(tuf.dir, kind, name);
    if (!existsSync(file)) return send(res, 404, { error: `no TUF file ${kind}/${name}` });
    const body = readFileSync(file);
    res.writeHead(200, { "content-type": kind === "metadata" ? "application/json" : "application/octet-stream", "content-length": body.length });
    res.end(body);
  }

  /** The bearer token (RFC 6750) checked against this connection's certificate; false after answering 401. */
  async function authorized(req: IncomingMessage, res: ServerResponse, cn: string): Promise<boolean> {
    const header = req.headers.authorization ?? "";
    const match = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/.exec(header);
    let refusal: TokenRefused | undefined;
    if (!match) refusal = new TokenRefused("invalid_request", header ? "the Authorization header is not a Bearer token" : `a Bearer token from ${auth.issuer} is required`);
    else {
      try {
        const { clientId } = await auth.verify(match[1]!, (req.socket as TLSSocket).getPeerCertificate().raw);
        if (clientId !== cn) refusal = new TokenRefused("invalid_token", `the access token was issued to '${clientId}', not to '${cn}'`);
      } catch (err) {
        if (!(err instanceof TokenRefused)) throw err;
        refusal = err;
      }
    }
    if (!refusal) {
      const serial = (req.socket as TLSSocket).getPeerCertificate().serialNumber ?? "";
      tokens.acceptedBySerial.set(serial, (tokens.acceptedBySerial.get(serial) ?? 0) + 1);
      return true;
    }
    tokens.refused++;
    const challenge = `Bearer realm="kerf-ingest", error="${refusal.error}", error_description="${refusal.message.replaceAll('"', "'")}"`;
    log.info({ connector: cn, error: refusal.error, detail: refusal.message }, "devcloud: ingest request refused: token");
    // The body is not read: answer and close.
    sendAndClose(req, res, refusal.error === "insufficient_scope" ? 403 : 401, { error: refusal.error, error_description: refusal.message }, { "www-authenticate": challenge });
    return false;
  }

  async function ingest(req: IncomingMessage, res: ServerResponse, cn: string): Promise<void> {
    const encoding = (req.headers["content-encoding"] ?? "identity").toLowerCase();
    if (encoding !== "gzip" && encoding !== "identity") return sendAndClose(req, res, 415, { error: `content-encoding '${encoding}' is not supported (expected gzip)` });
    const declared = Number(req.headers["content-length"] ?? 0);
    if (declared > maxBodyBytes) return sendAndClose(req, res, 413, { error: `body of ${declared} bytes exceeds ${maxBodyBytes}` });
    const raw = await readBody(req, maxBodyBytes);
    if (raw === "aborted") return;
    if (raw === "too_large") return sendAndClose(req, res, 413, { error: `body exceeds ${maxBodyBytes} bytes` });
    let text: Buffer;
    if (encoding === "gzip") {
      try {
        // maxOutputLength bounds the memory a small, highly compressed body (a gzip bomb) can claim.
        text = await gunzip(raw, { maxOutputLength: maxBodyBytes });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE") return send(res, 413, { error: `decompressed body exceeds ${maxBodyBytes} bytes` });
        return send(res, 400, { error: `body is not valid gzip: ${(err as Error).message}` });
      }
    } else text = raw;
    let value: unknown;
    try {
      value = JSON.parse(text.toString("utf8"));
    } catch (err) {
      return send(res, 400, { error: `body is not valid JSON: ${(err as Error).message}` });
    }
    const parsed = parseEnvelope(value);
    if (!parsed.ok) return send(res, 400, { error: "invalid ingest envelope", issues: parsed.issues });
    const env = parsed.envelope;
    if (env.connector !== cn) return send(res, 403, { error: `connector '${env.connector}' does not match the client certificate (CN '${cn}')` });
    const idem = req.headers["idempotency-key"];
    const expectedPrefix = `${env.connector}:`;
    if (typeof idem !== "string" || !idem.startsWith(expectedPrefix) || !idem.endsWith(`:${env.batch}`) || idem.length > 512) {
      return send(res, 400, { error: `Idempotency-Key must be '<connector>:<epoch>:<batch>' (expected '${env.connector}:…:${env.batch}', got '${String(idem).slice(0, 100)}')` });
    }
    if (faults.failNext && faults.failNext > 0) {
      faults.failNext--;
      return send(res, 503, { error: "injected fault" });
    }
    const fault = faults.status?.(req, env);
    if (fault !== undefined) {
      const answer = typeof fault === "number" ? { status: fault } : fault;
      return send(res, answer.status, answer.body ?? { error: "injected fault" }, answer.headers);
    }
    // Never a 413 for a batch already stored: a known key must get its 200 (docs/protocol.md).
    const hostile = faults.hostile?.pick(itemCount(env.messages), store.has(idem));
    if (hostile === "reset") return void req.socket.destroy();
    if (hostile === "unavailable" || hostile === "throttled") return send(res, hostile === "throttled" ? 429 : 503, { error: `injected fault: ${hostile}` }, { "retry-after": "1" });
    if (hostile === "tooLarge") return send(res, 413, { error: "injected fault: tooLarge" });
    const record = store.ingest(env.connector, env.batch, idem, env.messages);
    if (hostile === "lostAnswer") return void req.socket.destroy();
    const answer = JSON.stringify({ accepted: record.items, duplicate: record.duplicate });
    if (hostile === "drip") return faults.hostile!.drip(res, 200, answer);
    send(res, 200, answer);
  }

  await new Promise<void>((resolve, reject) => {
    https.once("error", reject);
    https.listen(options.port ?? 0, host, () => {
      https.off("error", reject);
      resolve();
    });
  });
  const port = (https.address() as AddressInfo).port;
  const url = baseUrl(port);
  const est = await startEstServer({
    dir: options.dir,
    ca,
    server,
    host,
    urlHost: isIP(host) === 6 ? `[${host}]` : host,
    ...(options.estPort !== undefined ? { port: options.estPort } : {}),
    ...(options.certTtlSeconds !== undefined ? { certTtlSeconds: options.certTtlSeconds } : {}),
    logger: log,
  }).catch(async (err: unknown) => {
    await new Promise<void>((resolve) => https.close(() => resolve()));
    throw err;
  });
  let authServer: AuthServer | undefined;
  const partner = await startPartnerServer({
    dir: options.dir,
    host,
    ...(options.partnerPort !== undefined ? { port: options.partnerPort } : {}),
    certPem: server.certPem,
    keyPem: server.keyPem,
    auth: () => authServer!,
    signer: commandSigner,
    hub: commands,
    latest: (connector, machine) => (store.sentBy(connector, machine) ? store.latest(machine) : undefined),
    logger: log,
  });
  const auth = await startAuthServer({
    partnerAudience: partner.audience,
    partners: () => partnerClients(options.dir),
    ca,
    certPem: server.certPem,
    keyPem: server.keyPem,
    host,
    port: options.authPort ?? 0,
    audience: url,
    // What `kerf devcloud --issue-client NAME` keeps, for instances whose certificate an earlier run issued.
    clientCertFor: (instance) => {
      const file = join(options.dir, "clients", instance, "client.pem");
      return existsSync(file) ? readFileSync(file, "utf8") : undefined;
    },
    logger: log,
    ...(options.tokenTtlSeconds !== undefined ? { tokenTtlSeconds: options.tokenTtlSeconds } : {}),
  }).catch(async (err: unknown) => {
    await partner.stop();
    await est.stop();
    await new Promise<void>((resolve) => https.close(() => resolve()));
    throw err;
  });
  authServer = auth;
  log.info({ url, est: est.url, pin: server.pin, issuer: auth.issuer, tokensRequired: tokens.required, partner: partner.url }, "devcloud listening");

  let stopped = false;
  return {
    url,
    dir: options.dir,
    port,
    host,
    ca,
    serverCertPem: server.certPem,
    pin: server.pin,
    store,
    faults,
    inFlight,
    clientCertificates,
    auth,
    tokens,
    refusedClientSerials,
    est,
    tuf,
    commands,
    commandSigner,
    commandKeysFile: commandSigner.keysFile,
    partner,
    async stop() {
      if (stopped) return;
      stopped = true;
      await partner.stop();
      await auth.stop();
      await est.stop();
      const closed = new Promise<void>((resolve) => https.close(() => resolve()));
      https.closeAllConnections();
      for (const socket of sockets) socket.destroy();
      await closed;
      store.close();
    },
  };
}

/**
 * The server key is kept in the directory so the pin survives restarts; the certificate is
 * issued again at each start (cheap) so it always names the host it listens on.
 */
async function serverCertificate(ca: DevCa, dir: string, host: string) {
  const keyFile = join(dir, "server.key");
  const existingKey = existsSync(keyFile) ? readFileSync(keyFile, "utf8") : undefined;
  const dnsNames = ["localhost"];
  const ips = ["127.0.0.1", "::1"];
  if (isIP(host) && !ips.includes(host)) ips.push(host);
  if (!isIP(host) && !dnsNames.includes(host)) dnsNames.push(host);
  const issued = await ca.issueServerCert({ dnsNames, ips, ...(existingKey ? { keyPem: existingKey } : {}) });
  if (!existingKey) writeFileAtomic(keyFile, issued.keyPem, 0o600);
  writeFileAtomic(join(dir, "server.pem"), issued.certPem, 0o644);
  return { certPem: issued.certPem, keyPem: issued.keyPem, pin: spkiPin(issued.certPem) };
}

function clientName(req: IncomingMessage): string {
  // rejectUnauthorized guarantees a verified client certificate from our CA by the time we get here.
  const cert = (req.socket as TLSSocket).getPeerCertificate();
  const cn = cert?.subject?.CN;
  return Array.isArray(cn) ? (cn[0] ?? "") : (cn ?? "");
}

/**
 * The body, "too_large" as soon as it grows past `limit` (the rest is left unread), or
 * "aborted" if the client went away first.
 */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer | "too_large" | "aborted"> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (result: Buffer | "too_large" | "aborted") => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("close", onClose);
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.pause();
        finish("too_large");
      } else chunks.push(chunk);
    };
    const onEnd = () => finish(Buffer.concat(chunks));
    const onClose = () => finish("aborted");
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("close", onClose);
  });
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** Answers, then closes the connection: the rest of the request body is not going to be read. */
function sendAndClose(req: IncomingMessage, res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  send(res, status, body, { ...headers, connection: "close" });
  res.on("finish", () => req.socket.destroySoon?.());
}
