/**
 * The devcloud's authorization server: oidc-provider on its own HTTPS listener (the devcloud's
 * server certificate, so the connector's pin holds), issuing client-credentials access tokens
 * (RFC 6749 §4.4) as short-lived ES256 JWTs bound to the client certificate (RFC 8705 §3).
 * Clients authenticate with their certificate from the devcloud CA (tls_client_auth) or with a
 * JWT signed by the key of the latest certificate the CA issued them (private_key_jwt,
 * RFC 7523; in this process, or kept by `kerf devcloud --issue-client`). Every valid instance name is a client: nothing is registered beforehand.
 *
 * The ingest side checks the tokens with `verifier()` (docs/protocol.md, "Access tokens").
 */
import { generateKeyPairSync, randomBytes, X509Certificate } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import { isIP } from "node:net";
import type { TLSSocket } from "node:tls";
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet, type JWK } from "jose";
import Provider, { errors, type Adapter, type AdapterPayload, type Configuration, type KoaContextWithOIDC } from "oidc-provider";
import type { CertAuthority } from "../certs/devca.ts";
import { SCOPES } from "../commands/actions.ts";
import type { Logger } from "../log.ts";

export const INGEST_SCOPE = "ingest";
/** Partner apps (issue 16) get tokens for the partner API with these scopes (src/commands/actions.ts). */
export const PARTNER_SCOPE_LIST: readonly string[] = SCOPES;
const instancePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export interface AuthServerOptions {
  ca: CertAuthority;
  /** The devcloud's server certificate and key. */
  certPem: string;
  keyPem: string;
  host: string;
  port?: number;
  /** The audience of the tokens: the ingest API's base URL. */
  audience: string;
  /** Lifetime of an access token. Default 300 s. */
  tokenTtlSeconds?: number;
  /** The partner API's base URL: the audience of partner apps' tokens. */
  partnerAudience?: string;
  /** Partner apps registered beforehand (partner.ts keeps them in the devcloud's directory). */
  partners?: () => ReadonlyMap<string, PartnerClient>;
  /** An instance's certificate (PEM) when `ca` has issued it none in this process, e.g. one kept on disk. */
  clientCertFor?: (instance: string) => string | undefined;
  logger: Logger;
}

export interface AuthServer {
  issuer: string;
  port: number;
  /** Token requests received, and access tokens issued. */
  counts: { tokenRequests: number; tokensIssued: number };
  /** Refused token requests, newest last (at most 100): the OAuth error and the server's detail, which the client is not told. */
  refusals: { error: string; detail: string }[];
  tokenTtlSeconds: number;
  /** Checks a partner app's access token for the partner API (not bound to a certificate). */
  verifyPartner(token: string): Promise<{ clientId: string; sub?: string; scopes: string[] }>;
  /** Checks an access token for a request over a connection with this client certificate. */
  verify(token: string, clientCertRaw: Buffer): Promise<{ clientId: string }>;
  stop(): Promise<void>;
}

/**
 * A partner app: a service app authenticates with its secret (client_secret_basic) and uses
 * client credentials; a user app is a public client using authorization code with PKCE.
 */
export interface PartnerClient {
  clientId: string;
  kind: "service" | "user";
  /** Service apps only. */
  secret?: string;
  /** User apps only. */
  redirectUris?: string[];
}

/** Why an ingest request's token was refused: an RFC 6750 error code and a description. */
export class TokenRefused extends Error {
  readonly error: "invalid_request" | "invalid_token" | "insufficient_scope";
  constructor(error: TokenRefused["error"], description: string) {
    super(description);
    this.error = error;
  }
}

export async function startAuthServer(options: AuthServerOptions): Promise<AuthServer> {
  const { ca, logger: log } = options;
  const ttl = options.tokenTtlSeconds ?? 300;
  const signing = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const privateJwk = { ...signing.privateKey.export({ format: "jwk" }), kid: randomBytes(8).toString("hex"), alg: "ES256", use: "sig" } as JWK;
  const publicJwks: JSONWebKeySet = { keys: [{ ...signing.publicKey.export({ format: "jwk" }), kid: privateJwk.kid!, alg: "ES256", use: "sig" } as JWK] };
  const counts = { tokenRequests: 0, tokensIssued: 0 };

  const server: Server = createServer({ cert: options.certPem, key: options.keyPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: false, minVersion: "TLSv1.2" });
  const sockets = new Set<Socket>();
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, options.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const issuer = `https://${isIP(options.host) === 6 ? `[${options.host}]` : options.host}:${port}`;

  const configuration: Configuration = {
    adapter: adapterFor((id) => ca.issuedClientCerts.get(id) ?? options.clientCertFor?.(id), (id) => options.partners?.().get(id)),
    clients: [],
    jwks: { keys: [privateJwk as never] },
    clientAuthMethods: ["tls_client_auth", "private_key_jwt", "client_secret_basic", "none"],
    enabledJWA: { clientAuthSigningAlgValues: ["ES256", "RS256", "PS256"] },
    scopes: [INGEST_SCOPE, ...PARTNER_SCOPE_LIST],
    cookies: { keys: [randomBytes(32).toString("hex")] },
    ttl: { ClientCredentials: () => ttl, AccessToken: () => ttl, AuthorizationCode: () => 60, Interaction: () => 600, Session: () => 3600, Grant: () => 3600 },
    // Partner user apps: the user is whoever login_hint names (a development login without a form,
    // so tests and the demo run headless); a real cloud puts its login and consent pages here.
    findAccount: (_ctx, id) => ({ accountId: id, claims: () => ({ sub: id }) }),
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      mTLS: {
        enabled: true,
        certificateBoundAccessTokens: true,
        tlsClientAuth: true,
        getCertificate: (ctx) => peerCertificate(ctx.socket as TLSSocket),
        // Node verified the chain against the devcloud CA during the handshake (requestCert, ca).
        certificateAuthorized: (ctx) => (ctx.socket as TLSSocket).authorized === true,
        certificateSubjectMatches: (ctx, property, expected) => {
          if (property !== "tls_client_auth_san_uri") return false;
          const cert = peerCertificate(ctx.socket as TLSSocket);
          return sanUris(cert).includes(expected);
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: (_ctx, client) => (client && options.partners?.().has(client.clientId) && options.partnerAudience ? options.partnerAudience : options.audience),
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resource, client) => {
          const partner = options.partners?.().has(client.clientId) === true;
          if (partner && resource === options.partnerAudience) {
            return { scope: PARTNER_SCOPE_LIST.join(" "), audience: resource, accessTokenTTL: ttl, accessTokenFormat: "jwt", jwt: { sign: { alg: "ES256" } } };
          }
          if (partner || resource !== options.audience) throw new errors.InvalidTarget(`unknown resource; this server issues tokens for ${partner ? options.partnerAudience : options.audience}`);
          return { scope: INGEST_SCOPE, audience: options.audience, accessTokenTTL: ttl, accessTokenFormat: "jwt", jwt: { sign: { alg: "ES256" } } };
        },
      },
    },
  };
  const provider = new Provider(issuer, configuration);
  provider.on("grant.success", () => counts.tokensIssued++);
  const refusals: AuthServer["refusals"] = [];
  provider.on("grant.error", (_ctx: unknown, err: Error & { error?: string; error_description?: string; error_detail?: string }) => {
    const refusal = { error: err.error ?? err.message, detail: err.error_detail ?? err.error_description ?? "" };
    refusals.push(refusal);
    if (refusals.length > 100) refusals.shift();
    log.info(refusal, "devcloud auth: token request refused");
  });
  const callback = provider.callback();
  server.on("request", (req, res) => {
    if (req.url?.startsWith("/token")) counts.tokenRequests++;
    if (req.url?.startsWith("/interaction/")) {
      devLogin(provider, options.partnerAudience, req, res).catch((err: unknown) => {
        log.info({ err: (err as Error).message }, "devcloud auth: development login refused");
        if (!res.headersSent) res.writeHead(400, { "content-type": "text/plain" });
        res.end(`login refused: ${(err as Error).message}`);
      });
      return;
    }
    callback(req, res);
  });
  log.info({ issuer, tokenTtlSeconds: ttl }, "devcloud authorization server listening");

  const keySet = createLocalJWKSet(publicJwks);
  return {
    issuer,
    port,
    counts,
    refusals,
    tokenTtlSeconds: ttl,
    async verifyPartner(token) {
      let payload;
      try {
        ({ payload } = await jwtVerify(token, keySet, { issuer, audience: options.partnerAudience ?? "-", algorithms: ["ES256"], typ: "at+jwt", requiredClaims: ["exp", "client_id"] }));
      } catch (err) {
        throw new TokenRefused("invalid_token", `the access token is not valid: ${(err as Error).message}`);
      }
      const scopes = typeof payload.scope === "string" ? payload.scope.split(" ") : [];
      const sub = typeof payload.sub === "string" && payload.sub !== payload.client_id ? payload.sub : undefined;
      return { clientId: String(payload.client_id), scopes, ...(sub ? { sub } : {}) };
    },
    async verify(token, clientCertRaw) {
      let payload;
      try {
        ({ payload } = await jwtVerify(token, keySet, { issuer, audience: options.audience, algorithms: ["ES256"], typ: "at+jwt", requiredClaims: ["exp", "client_id"] }));
      } catch (err) {
        throw new TokenRefused("invalid_token", `the access token is not valid: ${(err as Error).message}`);
      }
      const scopes = typeof payload.scope === "string" ? payload.scope.split(" ") : [];
      if (!scopes.includes(INGEST_SCOPE)) throw new TokenRefused("insufficient_scope", `the access token lacks the scope '${INGEST_SCOPE}'`);
      const bound = (payload.cnf as Record<string, unknown> | undefined)?.["x5t#S256"];
      const presented = new X509Certificate(clientCertRaw).fingerprint256.replaceAll(":", "");
      if (typeof bound !== "string" || Buffer.from(bound, "base64url").toString("hex").toUpperCase() !== presented) {
        throw new TokenRefused("invalid_token", "the access token is bound to another client certificate (cnf x5t#S256, RFC 8705)");
      }
      return { clientId: String(payload.client_id) };
    },
    async stop() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}

const userPattern = /^[a-z][a-z0-9._-]{0,63}$/;

/**
 * The development login and consent of the user app: the user named by login_hint is logged in
 * and consents to the partner scopes asked for, without a page. Development only.
 */
async function devLogin(provider: Provider, partnerAudience: string | undefined, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const details = await provider.interactionDetails(req, res);
  const hint = details.params.login_hint;
  if (details.prompt.name === "login") {
    if (typeof hint !== "string" || !userPattern.test(hint)) throw new Error("the development login needs login_hint=<user name>");
    await provider.interactionFinished(req, res, { login: { accountId: hint } }, { mergeWithLastSubmission: false });
    return;
  }
  const accountId = details.session?.accountId;
  if (details.prompt.name !== "consent" || !accountId || !partnerAudience) throw new Error(`unexpected prompt ${details.prompt.name}`);
  const grant = details.grantId ? await provider.Grant.find(details.grantId) : new provider.Grant({ accountId, clientId: String(details.params.client_id) });
  if (!grant) throw new Error("the grant of this interaction is gone");
  const missing = (details.prompt.details.missingResourceScopes ?? {}) as Record<string, string[]>;
  for (const [resource, scopes] of Object.entries(missing)) if (resource === partnerAudience) grant.addResourceScope(resource, scopes.join(" "));
  const scopes = details.prompt.details.missingOIDCScope as string[] | undefined;
  if (scopes) grant.addOIDCScope(scopes.join(" "));
  await provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } }, { mergeWithLastSubmission: true });
}

function peerCertificate(socket: TLSSocket): X509Certificate | undefined {
  const raw = socket.getPeerCertificate?.()?.raw;
  return raw ? new X509Certificate(raw) : undefined;
}

function sanUris(cert: X509Certificate | undefined): string[] {
  return (cert?.subjectAltName ?? "")
    .split(", ")
    .filter((n) => n.startsWith("URI:"))
    .map((n) => n.slice(4));
}

/**
 * Clients are made up on demand: any valid instance name is one. Its auth method follows the
 * request (a client_assertion means private_key_jwt), since an instance may use either. Other
 * models (assertion jti replay records) live in memory with their expiry.
 */
function adapterFor(certFor: (instance: string) => string | undefined, partnerFor: (id: string) => PartnerClient | undefined): (name: string) => Adapter {
  const store = new Map<string, { payload: AdapterPayload; expiresAt: number }>();
  return (name) => {
    const key = (id: string) => `${name}:${id}`;
    const get = (id: string) => {
      const entry = store.get(key(id));
      if (!entry) return undefined;
      if (entry.expiresAt <= Date.now()) {
        store.delete(key(id));
        return undefined;
      }
      return entry.payload;
    };
    return {
      async upsert(id, payload, expiresIn) {
        store.set(key(id), { payload, expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : Number.POSITIVE_INFINITY });
      },
      async find(id) {
        if (name === "Client") {
          const partner = partnerFor(id);
          return partner ? partnerMetadata(partner) : clientMetadata(certFor, id);
        }
        return get(id);
      },
      async findByUid(uid) {
        for (const [k, entry] of store) if (k.startsWith(`${name}:`) && entry.payload.uid === uid && entry.expiresAt > Date.now()) return entry.payload;
        return undefined;
      },
      async findByUserCode() {
        return undefined;
      },
      async consume(id) {
        const p = get(id);
        if (p) p.consumed = Math.floor(Date.now() / 1000);
      },
      async destroy(id) {
        store.delete(key(id));
      },
      async revokeByGrantId() {},
    };
  };
}

function clientMetadata(certFor: (instance: string) => string | undefined, id: string): AdapterPayload | undefined {
  if (!instancePattern.test(id)) return undefined;
  const ctx = Provider.ctx as KoaContextWithOIDC | undefined;
  const jwt = typeof ctx?.oidc?.params?.client_assertion === "string";
  const common = {
    client_id: id,
    grant_types: ["client_credentials"],
    response_types: [],
    redirect_uris: [],
    scope: INGEST_SCOPE,
    tls_client_certificate_bound_access_tokens: true,
    id_token_signed_response_alg: "ES256" as const,
  };
  if (!jwt) return { ...common, token_endpoint_auth_method: "tls_client_auth", tls_client_auth_san_uri: `urn:kerf:${id}` };
  const certPem = certFor(id);
  if (!certPem) return undefined;
  const jwk = new X509Certificate(certPem).publicKey.export({ format: "jwk" });
  return { ...common, token_endpoint_auth_method: "private_key_jwt", jwks: { keys: [jwk as never] } };
}

function partnerMetadata(p: PartnerClient): AdapterPayload {
  const common = { client_id: p.clientId, scope: PARTNER_SCOPE_LIST.join(" "), id_token_signed_response_alg: "ES256" as const };
  if (p.kind === "service") return { ...common, client_secret: p.secret!, grant_types: ["client_credentials"], response_types: [], redirect_uris: [], token_endpoint_auth_method: "client_secret_basic" };
  return { ...common, grant_types: ["authorization_code"], response_types: ["code"], redirect_uris: p.redirectUris ?? [], token_endpoint_auth_method: "none" };
}
