/**
 * The partner API (issue 16; docs/protocol.md "Partner API"): partner apps list their connectors,
 * read latest values, send commands and read their results. On its own HTTPS listener with the
 * devcloud's server certificate, without client certificates: partner apps authenticate with an
 * access token from the devcloud's authorization server. Every call is checked three ways:
 *   1. the token (jose against the authorization server's keys, issuer, audience) → else 401;
 *   2. the scope the action needs is in the token → else 403 insufficient_scope;
 *   3. the machine owner granted the app that scope on that connector → else 403 no_grant.
 * Only then is a command signed with the cloud's command key and queued for the connector.
 */
import { createServer, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { z } from "zod";
import { ACTION_ARGS, isAction, scopeOf, type Action, type Scope } from "../commands/actions.ts";
import type { Logger } from "../log.ts";
import { TokenRefused, type AuthServer } from "./auth.ts";
import type { CommandSigner } from "./command-signer.ts";
import type { CommandHub, CommandRecord } from "./commands.ts";
import { findGrant, readGrants } from "./grants.ts";

/** tapio's command names (itemRead, itemWrite, method) and the actions they are. */
export const TAPIO_SHORTHANDS: Readonly<Record<string, Action>> = { itemRead: "read", itemWrite: "write", method: "call" };

const DEFAULT_TIMEOUT_SECONDS = 60;
const ENVELOPE_TTL_SECONDS = 60;
/** A connector that polled within this is online (two poll periods). */
const ONLINE_MS = 2 * 25_000;

const commandRequest = z.strictObject({ action: z.string(), args: z.unknown().optional(), timeoutSeconds: z.int().min(1).max(3600).optional() });

export interface PartnerServerOptions {
  dir: string;
  host: string;
  port?: number;
  certPem: string;
  keyPem: string;
  /** Set once the authorization server runs (it needs this server's URL as audience first). */
  auth: () => AuthServer;
  signer: CommandSigner;
  hub: CommandHub;
  /** The latest values of a machine of this connector; undefined when the connector never sent that machine. */
  latest: (connector: string, machine: string) => unknown;
  logger: Logger;
}

export interface PartnerServer {
  url: string;
  /** The audience of partner tokens: `<url>/partner`. */
  audience: string;
  /** Refusals so far, by reason: what `kerf demo --scenario partner` counts. */
  refusals: Record<string, number>;
  stop(): Promise<void>;
}

class Refused extends Error {
  readonly status: number;
  readonly body: Record<string, unknown>;
  constructor(status: number, error: string, description: string) {
    super(description);
    this.status = status;
    this.body = { error, error_description: description };
  }
}

export async function startPartnerServer(o: PartnerServerOptions): Promise<PartnerServer> {
  const log = o.logger;
  const refusals: Record<string, number> = {};
  const server: Server = createServer({ cert: o.certPem, key: o.keyPem, minVersion: "TLSv1.2" }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (err instanceof Refused) {
        refusals[String(err.body.error)] = (refusals[String(err.body.error)] ?? 0) + 1;
        log.info({ status: err.status, ...err.body }, "devcloud partner API: refused");
        const headers: Record<string, string> = err.status === 401 ? { "www-authenticate": `Bearer realm="kerf-partner", error="invalid_token"` } : {};
        return send(res, err.status, err.body, headers);
      }
      log.error({ err }, "devcloud partner API: request failed");
      if (!res.headersSent) send(res, 500, { error: "internal error" });
    });
  });
  const sockets = new Set<Socket>();
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port ?? 0, o.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const url = `https://${o.host.includes(":") ? `[${o.host}]` : o.host}:${port}`;
  const audience = `${url}/partner`;

  async function token(req: IncomingMessage): Promise<{ clientId: string; sub?: string; scopes: string[] }> {
    const m = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/.exec(req.headers.authorization ?? "");
    if (!m) throw new Refused(401, "invalid_token", "a Bearer access token for the partner API is required");
    try {
      return await o.auth().verifyPartner(m[1]!);
    } catch (err) {
      if (err instanceof TokenRefused) throw new Refused(401, "invalid_token", err.message);
      throw err;
    }
  }

  /** Checks 2 and 3: the token's scope, then the owner's grant for this connector. */
  function allowed(who: { clientId: string; scopes: string[] }, connector: string, scope: Scope): Scope[] {
    if (!who.scopes.includes(scope)) throw new Refused(403, "insufficient_scope", `the access token lacks the scope '${scope}'`);
    const grant = findGrant(o.dir, who.clientId, connector);
    if (!grant?.scopes.includes(scope)) throw new Refused(403, "no_grant", `app '${who.clientId}' has no grant of '${scope}' on connector '${connector}'`);
    return grant.scopes.filter((s) => who.scopes.includes(s));
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? "/", "https://devcloud").pathname;
    const who = await token(req);
    if (path === "/partner/v1/connectors" && req.method === "GET") {
      const now = Date.now();
      const connectors = readGrants(o.dir)
        .filter((g) => g.clientId === who.clientId)
        .map((g) => {
          const seen = o.hub.seen(g.connector).lastPollAt;
          return { id: g.connector, scopes: g.scopes, online: seen !== null && now - seen < ONLINE_MS, lastSeenAt: seen === null ? null : new Date(seen).toISOString() };
        });
      return send(res, 200, { connectors });
    }
    const latest = /^\/partner\/v1\/connectors\/([^/]+)\/machines\/([^/]+)\/latest$/.exec(path);
    if (latest && req.method === "GET") {
      const [connector, machine] = [decodeURIComponent(latest[1]!), decodeURIComponent(latest[2]!)];
      allowed(who, connector, "machines:read");
      // a grant on one connector must not read another connector's machine by naming it
      const values = o.latest(connector, machine);
      if (values === undefined) return send(res, 404, { error: `no data of machine '${machine}' from connector '${connector}'` });
      return send(res, 200, { connector, machine, values });
    }
    const send_ = /^\/partner\/v1\/connectors\/([^/]+)\/commands$/.exec(path);
    if (send_ && req.method === "POST") return command(req, res, who, decodeURIComponent(send_[1]!));
    const get = /^\/partner\/v1\/commands\/([^/]+)$/.exec(path);
    if (get && req.method === "GET") {
      const record = o.hub.get(decodeURIComponent(get[1]!));
      // only the app (and user) that sent it: another app learns nothing, not even that it exists
      if (!record || record.clientId !== who.clientId || record.sub !== who.sub) return send(res, 404, { error: "no such command" });
      return send(res, 200, view(record));
    }
    return send(res, 404, { error: `no route ${req.method} ${path}` });
  }

  async function command(req: IncomingMessage, res: ServerResponse, who: { clientId: string; sub?: string; scopes: string[] }, connector: string): Promise<void> {
    let body: unknown;
    try {
      body = JSON.parse(await readText(req, 16 * 1024 * 1024 + 4096));
    } catch (err) {
      return send(res, 400, { error: "invalid_request", error_description: `the body is not JSON: ${(err as Error).message}` });
    }
    const parsed = commandRequest.safeParse(body);
    if (!parsed.success) return send(res, 400, { error: "invalid_request", error_description: "expected {action, args?, timeoutSeconds?}" });
    const action = TAPIO_SHORTHANDS[parsed.data.action] ?? parsed.data.action;
    if (!isAction(action)) return send(res, 400, { error: "invalid_request", error_description: `unknown action '${parsed.data.action}'` });
    const scopes = allowed(who, connector, scopeOf(action));
    const args = ACTION_ARGS[action].safeParse(parsed.data.args ?? {});
    if (!args.success) return send(res, 400, { error: "invalid_request", error_description: `invalid args for ${action}: ${args.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}` });
    const timeout = parsed.data.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS;
    const deadline = Date.now() + timeout * 1000;
    const signed = await o.signer.sign({ connector, clientId: who.clientId, ...(who.sub ? { sub: who.sub } : {}), scope: scopes.join(" "), action, args: args.data as never, ttlSeconds: Math.min(ENVELOPE_TTL_SECONDS, timeout) });
    const record = o.hub.enqueue({ jti: signed.jti, connector, clientId: who.clientId, ...(who.sub ? { sub: who.sub } : {}), action, envelope: signed.envelope, deadline: new Date(deadline).toISOString(), exp: signed.exp });
    log.info({ jti: record.jti, connector, app: who.clientId, action }, "devcloud partner API: command queued");
    return send(res, 202, view(record));
  }

  return {
    url,
    audience,
    refusals,
    async stop() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}

function view(r: CommandRecord) {
  return { jti: r.jti, connector: r.connector, action: r.action, state: r.state, ...(r.result ? { result: r.result } : {}), createdAt: r.createdAt, deadline: r.deadline };
}

function readText(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        req.destroy();
        reject(new Error(`body larger than ${limit} bytes`));
      } else chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...headers });
  res.end(text);
}
