/**
 * The one way to the cloud: every request (the sender's, and later the token client's, the
 * update fetcher's and the command channel's) goes through a Transport. It holds the pinned
 * mutual-TLS connection pool (TLS 1.2 or later, the instance certificate, SPKI pinning of the
 * cloud's chain, RFC 7469) and can swap the client certificate while requests run.
 *
 * It is an undici Dispatcher, so request decoration composes onto it (`transport.compose(...)`)
 * and a rotation reaches every composed dispatcher too.
 */
import { createSecureContext, checkServerIdentity as checkHostname, type PeerCertificate, type DetailedPeerCertificate } from "node:tls";
import { Agent, Dispatcher, EnvHttpProxyAgent, Pool } from "undici";
import { KerfError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { spkiPin, validatePins } from "../certs/pins.ts";
import { proxyAuthorization, tunnelClientFactory, type ProxySettings } from "./proxy.ts";

/** The instance's client certificate (PEM; intermediates may follow the leaf) and its key. */
export interface ClientIdentity {
  certPem: string;
  keyPem: string;
}

export interface TransportOptions extends Partial<ClientIdentity> {
  /** Trust anchors for the cloud's chain, PEM. Without it, Node's bundled public roots are used. */
  caPem?: string | undefined;
  /** SPKI pins ("sha256/<base64>"); the connection is accepted if any certificate of the chain matches any pin. */
  pins: readonly string[];
  /**
   * Only for the update mirror (signed TUF metadata needs no trusted transport): no pins, the
   * chain is checked against caPem or the system CAs, and the host name.
   */
  unpinned?: boolean;
  logger: Logger;
  /** Connections per origin; the sender's concurrency. Default 4. */
  connections?: number;
  connectTimeoutMs?: number;
  /** An HTTP CONNECT proxy for every connection (proxy.ts resolves it); TLS with the cloud runs through its tunnel. */
  proxy?: ProxySettings | null | undefined;
}

export class Transport extends Dispatcher {
  readonly #o: TransportOptions;
  #pins: ReadonlySet<string>;
  #identity: ClientIdentity | null;
  #current: Dispatcher;
  /** Pools of earlier certificates, closing once their requests have finished. */
  readonly #draining = new Set<Dispatcher>();
  readonly #rotated = new Set<(identity: ClientIdentity) => void>();
  #closed = false;

  constructor(options: TransportOptions) {
    super();
    const pins = new Set(validatePins(options.pins));
    if (pins.size === 0 && !options.unpinned) {
      throw new KerfError("CONFIG_INVALID", "cloud.pins is empty: at least one SPKI pin of the cloud's chain is required (see docs/protocol.md)");
    }
    this.#o = options;
    this.#pins = pins;
    // Without certificate and key it is the bootstrap transport (EST enrolment): pinned, but anonymous.
    this.#identity = options.certPem === undefined && options.keyPem === undefined ? null : checkedIdentity({ certPem: options.certPem ?? "", keyPem: options.keyPem ?? "" });
    this.#current = this.#pool(this.#identity);
  }

  /** The pins checked on new connections. */
  get pins(): string[] {
    return [...this.#pins];
  }

  override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    return this.#current.dispatch(options, handler);
  }

  /**
   * New connections present `identity` from now on; requests in flight finish on the old
   * connections, which close once they are idle. The data path does not stop. A certificate
   * that does not match its key is refused here, and the working identity stays.
   */
  rotate(identity: ClientIdentity): void {
    if (this.#closed) throw new KerfError("UPLINK_CLOSED", "the uplink transport is closed; a new client certificate cannot be put in service");
    const next = this.#pool(checkedIdentity(identity));
    this.#identity = identity;
    this.#swap(next);
    this.#o.logger.info("client certificate rotated: new connections use the new one, requests in flight finish on the old one");
    for (const listener of this.#rotated) listener(identity);
  }

  /**
   * New connections are checked against `pins` from now on (a signed pin set from the update
   * channel); requests in flight finish on the old connections, like rotate().
   */
  repin(pins: readonly string[]): void {
    if (this.#closed) throw new KerfError("UPLINK_CLOSED", "the uplink transport is closed; new pins cannot be put in service");
    const next = new Set(validatePins(pins));
    if (next.size === 0) throw new KerfError("CONFIG_INVALID", "a pin set must name at least one SPKI pin");
    this.#pins = next;
    this.#swap(this.#pool(this.#identity));
  }

  #swap(next: Dispatcher): void {
    const old = this.#current;
    this.#current = next;
    this.#draining.add(old);
    void old
      .close()
      .catch(() => undefined)
      .finally(() => this.#draining.delete(old));
  }

  /** Calls `listener` after each rotate(), e.g. so that certificate-bound tokens are fetched again. Returns the unsubscribe. */
  onRotate(listener: (identity: ClientIdentity) => void): () => void {
    this.#rotated.add(listener);
    return () => this.#rotated.delete(listener);
  }

  override close(): Promise<void>;
  override close(callback: () => void): void;
  override close(callback?: () => void): Promise<void> | void {
    this.#closed = true;
    const done = Promise.all([this.#current, ...this.#draining].map((a) => a.close())).then(() => undefined);
    if (!callback) return done;
    void done.then(callback, callback);
  }

  override destroy(): Promise<void>;
  override destroy(err: Error | null): Promise<void>;
  override destroy(callback: () => void): void;
  override destroy(err: Error | null, callback: () => void): void;
  override destroy(errOrCallback?: Error | null | (() => void), callback?: () => void): Promise<void> | void {
    const err = typeof errOrCallback === "function" ? null : (errOrCallback ?? null);
    const cb = typeof errOrCallback === "function" ? errOrCallback : callback;
    this.#closed = true;
    const done = Promise.all([this.#current, ...this.#draining].map((a) => a.destroy(err))).then(() => undefined);
    if (!cb) return done;
    void done.then(cb, cb);
  }

  #pool(identity: ClientIdentity | null): Dispatcher {
    const o = this.#o;
    const tls = {
      ...(identity ? { cert: identity.certPem, key: identity.keyPem } : {}),
      ...(o.caPem ? { ca: o.caPem } : {}),
      minVersion: "TLSv1.2",
      timeout: o.connectTimeoutMs ?? 10_000,
      // Node does not call checkServerIdentity on a resumed TLS session, so a resumed session
      // would skip the pin check. Without a session cache every connection is a full
      // handshake and is pinned; the cost is one extra round trip per new connection.
      maxCachedSessions: 0,
      ...(o.unpinned ? {} : { checkServerIdentity: checkPinnedServerIdentity(this.#pins, o.logger) }),
    } as const;
    // A Dispatcher's connection events, from whichever pool: what watches the transport sees them all.
    const to = this as unknown as Emitter;
    const forward = (from: Dispatcher) => {
      for (const event of ["connect", "disconnect", "connectionError", "drain"]) (from as unknown as Emitter).on(event, (...args) => to.emit(event, ...args));
      return from;
    };
    // HTTP/1.1 only: the ingest protocol needs nothing more, and one framing keeps errors predictable.
    const common = { connections: o.connections ?? 4, allowH2: false };
    if (!o.proxy) return forward(new Agent({ ...common, connect: tls }));
    // Through a proxy, the cloud's TLS options go in requestTls, which undici applies to the TLS
    // session inside the tunnel (the proxy's own TLS, for an https:// proxy, is proxyTls). The
    // same options as `connect` serve the hosts that NO_PROXY sends direct. undici JSON-clones
    // the other Agent options, which would drop checkServerIdentity: never put TLS there.
    const token = proxyAuthorization(o.proxy);
    return new EnvHttpProxyAgent({
      ...common,
      httpProxy: o.proxy.url,
      httpsProxy: o.proxy.url,
      noProxy: o.proxy.noProxy,
      connect: tls,
      requestTls: tls,
      proxyTls: { minVersion: "TLSv1.2", timeout: tls.timeout },
      ...(token ? { token } : {}),
      clientFactory: tunnelClientFactory(o.proxy, tls.timeout),
      // The pools to the cloud, tunnelled or direct, are made here, so their events can be forwarded.
      factory: (origin: string | URL, options: object) => forward(new Pool(origin, options)),
    });
  }
}

/** undici types each Dispatcher event apart; forwarding them needs the plain EventEmitter view. */
interface Emitter {
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  emit(event: string, ...args: unknown[]): boolean;
}

/** The identity, once Node has accepted the certificate with the key (it throws on a mismatch). */
function checkedIdentity(identity: ClientIdentity): ClientIdentity {
  try {
    createSecureContext({ cert: identity.certPem, key: identity.keyPem });
  } catch (err) {
    throw new KerfError("CERT_KEY_MISMATCH", `the client certificate cannot be used with its key: ${(err as Error).message}`, { cause: err });
  }
  return identity;
}

/**
 * The checkServerIdentity function: Node's hostname check, then the pin check. Returning an
 * error makes Node destroy the socket before undici writes the request.
 */
export function checkPinnedServerIdentity(pins: ReadonlySet<string>, log: Logger): (hostname: string, cert: PeerCertificate) => Error | undefined {
  return (hostname, cert) => {
    const hostError = checkHostname(hostname, cert);
    if (hostError) {
      const err = new KerfError("UPLINK_TLS", `the cloud's certificate is not valid for host '${hostname}': ${hostError.message}`, { cause: hostError, context: { host: hostname } });
      log.error({ host: hostname, code: err.code }, err.message);
      return err;
    }
    const presented = chainPins(cert as DetailedPeerCertificate);
    if (presented.some((p) => pins.has(p))) return undefined;
    const err = new KerfError(
      "UPLINK_PIN_MISMATCH",
      `the cloud at '${hostname}' presented no pinned key: its chain has ${presented.join(", ")}; configured pins are ${[...pins].join(", ")}. Nothing was sent. If the cloud rotated its key, add the new pin to cloud.pins`,
      { details: [`presented: ${presented.join(" ")}`, `configured: ${[...pins].join(" ")}`], context: { host: hostname } },
    );
    log.error({ host: hostname, presented, configured: [...pins], code: err.code }, "SPKI pin mismatch; connection refused before any request byte was sent");
    return err;
  };
}

/**
 * The SPKI pins of the presented chain, leaf first. Node links each certificate to its issuer
 * and ends the chain with a root that points to itself.
 */
export function chainPins(cert: DetailedPeerCertificate): string[] {
  const pins: string[] = [];
  const seen = new Set<DetailedPeerCertificate>();
  let current: DetailedPeerCertificate | undefined = cert;
  while (current && current.raw && !seen.has(current)) {
    seen.add(current);
    pins.push(spkiPin(current.raw));
    current = current.issuerCertificate;
  }
  return pins;
}
