/**
 * The devcloud's EST server (RFC 7030): `/.well-known/est/cacerts`, `/simpleenroll` with a
 * one-time bootstrap token (HTTP Basic, username = instance) and `/simplereenroll` with a
 * currently valid client certificate from the devcloud CA for the same instance. It listens on
 * its own HTTPS port with the ingest's server certificate (same pin), asking for a client
 * certificate without demanding one: each route decides.
 *
 * Bootstrap tokens are single-use and kept as SHA-256 hashes in `est-tokens.json`, so that
 * `kerf devcloud --issue-token` can add one while a devcloud runs. After MAX_FAILURES failed
 * attempts for an instance it is locked out until a new token is issued for it.
 */
import { createHash, randomBytes, timingSafeEqual, X509Certificate } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";
import type { CertAuthority } from "../certs/devca.ts";
import { writeFileAtomic } from "../certs/files.ts";
import { x509 } from "../certs/x509.ts";
import type { Logger } from "../log.ts";

export const EST_PATH = "/.well-known/est";
/** Failed bootstrap attempts per instance before it is locked out. */
export const MAX_FAILURES = 5;
const DEFAULT_TTL_SECONDS = 365 * 24 * 3600;

export interface EstFaults {
  /** Answer 503 to the next N enrolment requests (simpleenroll and simplereenroll). */
  failNext?: number;
  /** Replace the issued certificates (PEM) with what this returns: a misbehaving CA, for the client's checks. */
  answer?: (op: "simpleenroll" | "simplereenroll", csrPem: string, issuedPem: string) => Promise<string | undefined> | string | undefined;
}

export interface EstServer {
  /** The EST base URL: https://host:port/.well-known/est */
  url: string;
  port: number;
  /** A new single-use bootstrap token for the instance; it also lifts a lockout. */
  issueBootstrapToken(instance: string): string;
  faults: EstFaults;
  /** Certificates issued by simpleenroll and simplereenroll. */
  counts: { enrolled: number; reenrolled: number; refused: number };
  stop(): Promise<void>;
}

interface TokenEntry {
  /** Hash of the token that may be used, or null once spent. */
  pending: string | null;
  /** Hashes of spent tokens, to say "already used" rather than "wrong". */
  used: string[];
  failures: number;
}

/** The token file: read and written on each use, so the CLI and the server can share it. */
export class EstTokens {
  readonly file: string;

  constructor(dir: string) {
    this.file = join(dir, "est-tokens.json");
  }

  issue(instance: string): string {
    const token = randomBytes(24).toString("base64url");
    const all = this.#read();
    const entry = all[instance] ?? { pending: null, used: [], failures: 0 };
    all[instance] = { ...entry, pending: hash(token), failures: 0 };
    this.#write(all);
    return token;
  }

  /** Checks a token without spending it. */
  check(instance: string, token: string): { ok: true } | { ok: false; status: number; message: string } {
    const all = this.#read();
    const entry = all[instance] ?? { pending: null, used: [], failures: 0 };
    if (entry.failures >= MAX_FAILURES) return { ok: false, status: 403, message: lockedMessage(instance) };
    const h = hash(token);
    if (entry.pending !== null && equal(entry.pending, h)) return { ok: true };
    entry.failures++;
    all[instance] = entry;
    this.#write(all);
    const left = MAX_FAILURES - entry.failures;
    const why = entry.used.some((u) => equal(u, h)) ? "this bootstrap token was already used" : "wrong bootstrap token";
    const tail = left > 0 ? `${left} attempt${left === 1 ? "" : "s"} remain before lockout` : `instance '${instance}' is now locked out; the cloud administrator must issue a new bootstrap token (devcloud: kerf devcloud --issue-token ${instance})`;
    return { ok: false, status: 401, message: `${why} for instance '${instance}': failed attempt ${entry.failures} of ${MAX_FAILURES}; ${tail}` };
  }

  /**
   * Checks and spends the token in one synchronous step, so that two requests racing with the
   * same token cannot both pass the check while a certificate is being issued.
   */
  take(instance: string, token: string): ReturnType<EstTokens["check"]> {
    const checked = this.check(instance, token);
    if (!checked.ok) return checked;
    const all = this.#read();
    const entry = all[instance]!;
    all[instance] = { pending: null, used: [...entry.used, entry.pending!], failures: 0 };
    this.#write(all);
    return checked;
  }

  /** Gives back a token taken by a request that then failed before a certificate was issued (a bad request, a CA error). */
  giveBack(instance: string, token: string): void {
    const all = this.#read();
    const entry = all[instance];
    const h = hash(token);
    if (!entry || entry.pending !== null || !entry.used.some((u) => equal(u, h))) return;
    all[instance] = { ...entry, pending: h, used: entry.used.filter((u) => !equal(u, h)) };
    this.#write(all);
  }

  #read(): Record<string, TokenEntry> {
    return existsSync(this.file) ? (JSON.parse(readFileSync(this.file, "utf8")) as Record<string, TokenEntry>) : {};
  }

  #write(all: Record<string, TokenEntry>): void {
    writeFileAtomic(this.file, JSON.stringify(all, null, 1), 0o600);
  }
}

function lockedMessage(instance: string): string {
  return `instance '${instance}' is locked out after ${MAX_FAILURES} failed bootstrap attempts; the cloud administrator must issue a new bootstrap token (devcloud: kerf devcloud --issue-token ${instance}), then run kerf enroll --token-file FILE`;
}

function hash(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

function equal(a: string, b: string): boolean {
  return a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));
}

export async function startEstServer(options: {
  dir: string;
  ca: CertAuthority;
  server: { certPem: string; keyPem: string };
  host: string;
  port?: number;
  urlHost: string;
  /** Lifetime of issued certificates. Default one year. */
  certTtlSeconds?: number;
  logger: Logger;
}): Promise<EstServer> {
  const { ca, logger: log } = options;
  const tokens = new EstTokens(options.dir);
  const faults: EstFaults = {};
  const counts = { enrolled: 0, reenrolled: 0, refused: 0 };
  const ttlMs = (options.certTtlSeconds ?? DEFAULT_TTL_SECONDS) * 1000;
  const caPkcs7 = pkcs7([ca.certPem + ca.chainPem]);

  const https: Server = createServer(
    { cert: options.server.certPem, key: options.server.keyPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: false, minVersion: "TLSv1.2" },
    (req, res) => {
      handle(req, res).catch((err) => {
        log.error({ err }, "devcloud EST: request failed");
        if (!res.headersSent) text(res, 500, "internal error");
        else res.destroy();
      });
    },
  );
  const sockets = new Set<Socket>();
  https.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? "/", "https://devcloud").pathname;
    const op = path.startsWith(EST_PATH + "/") ? path.slice(EST_PATH.length + 1) : "";
    if (op === "cacerts" && req.method === "GET") return certsOnly(res, caPkcs7);
    if ((op === "simpleenroll" || op === "simplereenroll") && req.method === "POST") {
      const body = await readSmall(req);
      const refuse = (status: number, message: string, headers: Record<string, string> = {}) => {
        counts.refused++;
        log.info({ op, status, message }, "devcloud EST: refused");
        text(res, status, message, headers);
      };
      let instance: string;
      let token: string | null = null;
      if (op === "simpleenroll") {
        const basic = /^Basic\s+(\S+)$/i.exec(req.headers.authorization ?? "");
        const decoded = basic ? Buffer.from(basic[1]!, "base64").toString("utf8") : "";
        const colon = decoded.indexOf(":");
        if (colon <= 0) return refuse(401, "HTTP Basic authentication is required: username = instance, password = bootstrap token", { "www-authenticate": 'Basic realm="kerf-est"' });
        instance = decoded.slice(0, colon);
        token = decoded.slice(colon + 1);
        const checked = tokens.take(instance, token);
        if (!checked.ok) return refuse(checked.status, checked.message, checked.status === 401 ? { "www-authenticate": 'Basic realm="kerf-est"' } : {});
      } else {
        const socket = req.socket as TLSSocket;
        const peer = socket.getPeerCertificate();
        if (!peer || !peer.raw) return refuse(401, "/simplereenroll needs the current client certificate (mutual TLS); none was presented");
        if (!socket.authorized) return refuse(403, `the client certificate is not accepted for renewal: ${String(socket.authorizationError)} (it must be a currently valid certificate from this cloud's CA)`);
        const cn = peer.subject?.CN;
        instance = Array.isArray(cn) ? (cn[0] ?? "") : (cn ?? "");
      }
      // Past this point a taken bootstrap token goes back when no certificate is issued.
      const fail: typeof refuse = (...args) => {
        if (token !== null) tokens.giveBack(instance, token);
        return refuse(...args);
      };
      if (faults.failNext && faults.failNext > 0) {
        faults.failNext--;
        return fail(503, "injected fault", { "retry-after": "1" });
      }
      let csrPem: string;
      try {
        const der = Buffer.from(body.replace(/\s+/g, ""), "base64");
        csrPem = new x509.Pkcs10CertificateRequest(der).toString("pem");
      } catch (err) {
        return fail(400, `the body is not a base64 DER PKCS#10 request: ${(err as Error).message}`);
      }
      const csrCn = /(?:^|,\s*)CN=([^,]+)/.exec(new x509.Pkcs10CertificateRequest(csrPem).subject)?.[1];
      if (csrCn !== instance) return fail(403, `the request names CN=${csrCn ?? "(none)"}, but the ${op === "simpleenroll" ? "token" : "client certificate"} is for instance '${instance}'`);
      const now = Date.now();
      let issued: string;
      try {
        // A little before now for clocks that run behind, but a small part of a short lifetime.
        issued = await ca.issueClientCert({ instance, csrPem, notBefore: new Date(now - Math.min(300_000, ttlMs / 10)), notAfter: new Date(now + ttlMs) });
      } catch (err) {
        return fail(400, (err as Error).message);
      }
      counts[op === "simpleenroll" ? "enrolled" : "reenrolled"]++;
      const answer = (await faults.answer?.(op, csrPem, issued)) ?? issued;
      log.info({ op, instance, serial: new X509Certificate(issued).serialNumber }, "devcloud EST: issued");
      return certsOnly(res, pkcs7([answer]));
    }
    return text(res, 404, `no EST route ${req.method} ${path}`);
  }

  await new Promise<void>((resolve, reject) => {
    https.once("error", reject);
    https.listen(options.port ?? 0, options.host, () => {
      https.off("error", reject);
      resolve();
    });
  });
  const port = (https.address() as AddressInfo).port;
  let stopped = false;
  return {
    url: `https://${options.urlHost}:${port}${EST_PATH}`,
    port,
    issueBootstrapToken: (instance) => tokens.issue(instance),
    faults,
    counts,
    async stop() {
      if (stopped) return;
      stopped = true;
      const closed = new Promise<void>((resolve) => https.close(() => resolve()));
      https.closeAllConnections();
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}

/** PEM certificates as a base64 certs-only PKCS#7, 64 characters a line. */
function pkcs7(pems: string[]): string {
  const certs = new x509.X509Certificates(pems.flatMap((p) => p.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((p) => new x509.X509Certificate(p)));
  return certs.export("base64").replace(/(.{64})/g, "$1\n") + "\n";
}

function certsOnly(res: ServerResponse, body: string): void {
  res.writeHead(200, { "content-type": "application/pkcs7-mime; smime-type=certs-only", "content-transfer-encoding": "base64", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

function text(res: ServerResponse, status: number, message: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(message), ...headers });
  res.end(message);
}

function readSmall(req: IncomingMessage, limit = 64 * 1024): Promise<string> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > limit) req.destroy(new Error("request body too large"));
      else chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}
