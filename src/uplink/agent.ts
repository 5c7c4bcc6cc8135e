/**
 * The one undici Agent through which every request to the cloud goes: mutual TLS with the
 * instance certificate, TLS 1.2 or later, and SPKI pinning (RFC 7469) of the cloud's chain.
 */
import { checkServerIdentity as checkHostname, type PeerCertificate, type DetailedPeerCertificate } from "node:tls";
import { Agent } from "undici";
import { KerfError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { spkiPin, validatePins } from "../certs/pins.ts";

export interface UplinkAgentOptions {
  /** Client certificate, PEM; intermediates may follow the leaf. */
  certPem: string;
  keyPem: string;
  /** Trust anchors for the cloud's chain, PEM. Without it, Node's bundled public roots are used. */
  caPem?: string | undefined;
  /** SPKI pins ("sha256/<base64>"); the connection is accepted if any certificate of the chain matches any pin. */
  pins: readonly string[];
  logger: Logger;
  /** Connections per origin; the sender's concurrency. Default 4. */
  connections?: number;
  connectTimeoutMs?: number;
}

export function createUplinkAgent(options: UplinkAgentOptions): Agent {
  const pins = new Set(validatePins(options.pins));
  if (pins.size === 0) {
    throw new KerfError("CONFIG_INVALID", "cloud.pins is empty: at least one SPKI pin of the cloud's chain is required (see docs/protocol.md)");
  }
  const log = options.logger;
  return new Agent({
    connections: options.connections ?? 4,
    // HTTP/1.1 only: the ingest protocol needs nothing more, and one framing keeps errors predictable.
    allowH2: false,
    connect: {
      cert: options.certPem,
      key: options.keyPem,
      ...(options.caPem ? { ca: options.caPem } : {}),
      minVersion: "TLSv1.2",
      timeout: options.connectTimeoutMs ?? 10_000,
      // Node does not call checkServerIdentity on a resumed TLS session, so a resumed session
      // would skip the pin check. Without a session cache every connection is a full
      // handshake and is pinned; the cost is one extra round trip per new connection.
      maxCachedSessions: 0,
      checkServerIdentity: checkPinnedServerIdentity(pins, log),
    },
  });
}

/**
 * The checkServerIdentity function: Node's hostname check, then the pin check. Returning an
 * error makes Node destroy the socket before undici writes the request.
 */
export function checkPinnedServerIdentity(pins: ReadonlySet<string>, log: Logger): (hostname: string, cert: PeerCertificate) => Error | undefined {
  return (hostname, cert) => {
    const hostError = checkHostname(hostname, cert);
    if (hostError) {
      const err = new KerfError("UPLINK_TLS", `the cloud's certificate is not valid for host '${hostname}': ${hostError.message}`, { cause: hostError });
      log.error({ host: hostname, code: err.code }, err.message);
      return err;
    }
    const presented = chainPins(cert as DetailedPeerCertificate);
    if (presented.some((p) => pins.has(p))) return undefined;
    const err = new KerfError(
      "UPLINK_PIN_MISMATCH",
      `the cloud at '${hostname}' presented no pinned key: its chain has ${presented.join(", ")}; configured pins are ${[...pins].join(", ")}. Nothing was sent. If the cloud rotated its key, add the new pin to cloud.pins`,
      { details: [`presented: ${presented.join(" ")}`, `configured: ${[...pins].join(" ")}`] },
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
