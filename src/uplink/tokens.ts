/**
 * Access tokens for the ingest API: OAuth 2.0 client credentials (RFC 6749 §4.4) through
 * openid-client, with discovery. The client authenticates with its instance certificate
 * (`tls_client_auth`, RFC 8705 §2.1) or with a JWT signed by the instance key
 * (`private_key_jwt`, RFC 7523); either way the token is bound to the client certificate
 * (RFC 8705 §3), so it is worth nothing over another connection. Every request, discovery
 * included, goes through the uplink's Transport: pinned and with mutual TLS.
 *
 * openid-client fetches tokens but does not keep them fresh; this class does:
 * - renewal at 70–80 % of the lifetime the server gave (expires_in), on the monotonic clock, so
 *   a wrong or jumping wall clock neither expires a token early nor keeps a stale one;
 * - one token request at a time (single flight): concurrent callers share it;
 * - a certificate rotation fetches a token for the new certificate at once;
 * - a failed request is retried with backoff, the old token is used while it is still valid.
 * The token value is never logged: it is kept in a Secret.
 */
import { createPrivateKey } from "node:crypto";
import * as oauth from "openid-client";
import { fetch as undiciFetch } from "undici";
import { backoff } from "../backoff.ts";
import { Secret } from "../config/secrets.ts";
import { KerfError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { ClientIdentity, Transport } from "./transport.ts";

export type TokenAuthMethod = "tls_client_auth" | "private_key_jwt";

export interface TokenClientOptions {
  /** The authorization server's issuer URL (https); its metadata is discovered from it. */
  issuer: string;
  method: TokenAuthMethod;
  /** The client_id: the connector's instance name. */
  clientId: string;
  scope: string;
  /** The resource indicator (RFC 8707): the ingest API's audience. */
  resource: string;
  transport: Transport;
  /** The instance key (PEM), for private_key_jwt; a rotation brings the new one. */
  keyPem: string;
  logger: Logger;
  /** Backoff of failed token requests. */
  retry?: { initialDelayMs: number; maxDelayMs: number };
  random?: () => number;
}

export interface TokenHealth {
  /** When the current token expires (wall clock, ms), or null without one. */
  expiresAt: number | null;
  renewals: number;
  lastError: string | null;
  lastErrorAt: number | null;
  /** When the next fetch is scheduled (wall clock, ms; renewal ahead of expiry, or a retry), null before the first. */
  nextRenewalAt: number | null;
  /** A fetch is under way. */
  renewing: boolean;
}

/** A token and its deadlines on the monotonic clock (performance.now). */
interface Held {
  value: Secret;
  renewAt: number;
  expiresAt: number;
}

/** A token is not handed out for a request that could outlive it by less than this. */
const EXPIRY_MARGIN_MS = 1_000;

export class TokenClient {
  readonly #o: TokenClientOptions;
  readonly #log: Logger;
  readonly #random: () => number;
  #keyPem: string;
  #server: oauth.ServerMetadata | null = null;
  /** The authorization server's clock minus ours, in seconds, from its Date headers. */
  #skewS = 0;
  #held: Held | null = null;
  #flight: Promise<Held> | null = null;
  /** Bumped by each rotation: a token fetched with an older certificate is not kept. */
  #generation = 0;
  #timer: NodeJS.Timeout | undefined;
  #failures = 0;
  #closed = false;
  readonly #unsubscribe: () => void;
  #health: Omit<TokenHealth, "renewing"> = { expiresAt: null, renewals: 0, lastError: null, lastErrorAt: null, nextRenewalAt: null };

  constructor(options: TokenClientOptions) {
    this.#o = options;
    this.#keyPem = options.keyPem;
    this.#log = options.logger;
    this.#random = options.random ?? Math.random;
    this.#unsubscribe = options.transport.onRotate((identity) => this.#rotated(identity));
  }

  /** A valid token: the current one, or a new one when there is none (shared with concurrent callers). */
  async token(): Promise<Secret> {
    const held = this.#held;
    if (held && performance.now() < held.expiresAt - EXPIRY_MARGIN_MS) return held.value;
    return (await this.#refresh()).value;
  }

  /**
   * The cloud refused `rejected` (401): a new token, unless another caller has already replaced
   * it, in which case that one is returned. Concurrent 401s share one token request.
   */
  async renew(rejected: Secret): Promise<Secret> {
    if (this.#held && this.#held.value !== rejected) return this.#held.value;
    this.#held = null;
    return (await this.#refresh()).value;
  }

  health(): TokenHealth {
    return { ...this.#health, renewing: this.#flight !== null };
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#unsubscribe();
  }

  #rotated(identity: ClientIdentity): void {
    this.#keyPem = identity.keyPem;
    this.#generation++;
    this.#held = null;
    this.#log.info({ issuer: this.#o.issuer }, "client certificate rotated: fetching an access token bound to the new certificate");
    void this.#refresh().catch(() => undefined);
  }

  #refresh(): Promise<Held> {
    this.#flight ??= this.#fetch().finally(() => (this.#flight = null));
    return this.#flight;
  }

  async #fetch(): Promise<Held> {
    clearTimeout(this.#timer);
    for (;;) {
      const generation = this.#generation;
      let held: Held;
      try {
        held = await this.#request();
      } catch (err) {
        const error = tokenError(err, this.#o.issuer);
        this.#failures++;
        this.#health.lastError = error.message;
        this.#health.lastErrorAt = Date.now();
        this.#log.error({ event: "token_failed", issuer: this.#o.issuer, code: error.code, attempt: this.#failures }, error.message);
        this.#schedule(backoff(this.#failures, this.#o.retry ?? { initialDelayMs: 1_000, maxDelayMs: 60_000 }, this.#random));
        throw error;
      }
      // Fetched over the certificate that has just been replaced: bound to the wrong one.
      if (generation !== this.#generation) continue;
      if (this.#health.expiresAt !== null) this.#health.renewals++;
      this.#failures = 0;
      this.#held = held;
      this.#health.expiresAt = Date.now() + (held.expiresAt - performance.now());
      this.#health.lastError = null;
      this.#schedule(held.renewAt - performance.now());
      return held;
    }
  }

  #schedule(ms: number): void {
    clearTimeout(this.#timer);
    if (this.#closed) return;
    this.#health.nextRenewalAt = Date.now() + Math.max(0, ms);
    this.#timer = setTimeout(() => void this.#refresh().catch(() => undefined), Math.max(0, ms));
    // Renewal serves requests; it must not keep a stopping process alive.
    this.#timer.unref();
  }

  async #request(): Promise<Held> {
    const o = this.#o;
    const started = performance.now();
    const customFetch: oauth.CustomFetch = async (url, options) => {
      const res = await undiciFetch(url, { ...(options as object), dispatcher: o.transport } as Parameters<typeof undiciFetch>[1]);
      this.#learnSkew(res.headers.get("date"));
      return res as unknown as Response;
    };
    if (!this.#server) {
      const discovered = await oauth.discovery(new URL(o.issuer), o.clientId, undefined, undefined, { [oauth.customFetch]: customFetch });
      this.#server = discovered.serverMetadata();
    }
    const config = new oauth.Configuration(
      this.#server,
      o.clientId,
      // private_key_jwt assertions carry iat/exp from our clock: stated on the server's clock instead.
      { tls_client_certificate_bound_access_tokens: true, [oauth.clockSkew]: this.#skewS },
      o.method === "private_key_jwt" ? oauth.PrivateKeyJwt(await signingKey(this.#keyPem)) : oauth.TlsClientAuth(),
    );
    config[oauth.customFetch] = customFetch;
    const response = await oauth.clientCredentialsGrant(config, { scope: o.scope, resource: o.resource });
    const expiresIn = (response.expires_in ?? 0) * 1000;
    if (!(expiresIn > 0)) throw new KerfError("AUTH_TOKEN", `the authorization server ${o.issuer} returned an access token without expires_in; renewal needs its lifetime`);
    // expires_in counts whole seconds from a time the server may have rounded down: a second less.
    const lifetimeMs = Math.max(expiresIn - 1000, expiresIn / 2);
    // 70–80 % of the lifetime: renewed well before it expires, and a fleet does not renew in lockstep.
    const renewAfter = lifetimeMs * (0.7 + 0.1 * this.#random());
    this.#log.debug({ issuer: o.issuer, expiresInS: response.expires_in, scope: response.scope }, "access token obtained");
    return { value: new Secret(response.access_token), renewAt: started + renewAfter, expiresAt: started + lifetimeMs };
  }

  #learnSkew(date: string | null): void {
    const server = date ? Date.parse(date) : Number.NaN;
    if (Number.isNaN(server)) return;
    // Date has whole seconds: a difference of a second or two is noise.
    const skew = Math.round((server - Date.now()) / 1000);
    const next = Math.abs(skew) > 2 ? skew : 0;
    if (next !== this.#skewS && Math.abs(next - this.#skewS) > 2) this.#log.warn({ issuer: this.#o.issuer, skewSeconds: next }, "the authorization server's clock differs from ours; client assertions are dated on its clock");
    this.#skewS = next;
  }
}

/** The instance key as a WebCrypto signing key: ES256 for EC P-256, RS256 for RSA. */
async function signingKey(keyPem: string): Promise<oauth.CryptoKey> {
  const key = createPrivateKey(keyPem);
  if (key.asymmetricKeyType === "ec") return key.toCryptoKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign"]);
  if (key.asymmetricKeyType === "rsa") return key.toCryptoKey({ name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }, false, ["sign"]);
  throw new KerfError("AUTH_TOKEN", `private_key_jwt needs an EC P-256 or RSA instance key, not ${key.asymmetricKeyType}`);
}

/** A KerfError AUTH_TOKEN naming the issuer and the server's OAuth error (invalid_client, ...). */
function tokenError(err: unknown, issuer: string): KerfError {
  if (err instanceof KerfError && err.code === "AUTH_TOKEN") return err;
  const e = err as { error?: unknown; error_description?: unknown; status?: unknown; code?: unknown; message?: string; cause?: unknown };
  if (typeof e.error === "string") {
    const description = typeof e.error_description === "string" ? ` (${e.error_description})` : "";
    return new KerfError("AUTH_TOKEN", `the authorization server ${issuer} refused the token request: ${e.error}${description}, HTTP ${String(e.status)}; check cloud.auth and that the server knows this instance`, { cause: err, context: { host: new URL(issuer).host } });
  }
  const cause = err instanceof KerfError ? err : (e.cause as { code?: unknown; message?: string } | undefined);
  const detail = cause && typeof cause.code === "string" ? `${cause.code}: ${cause.message}` : (e.message ?? String(err));
  return new KerfError("AUTH_TOKEN", `no access token from the authorization server ${issuer}: ${detail}`, { cause: err, context: { host: new URL(issuer).host } });
}
