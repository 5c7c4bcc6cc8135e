import { X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import { exploreCertificate, split_der } from "node-opcua-crypto";
import { KerfError } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import type { EndpointSpec } from "../types.ts";

/** What an operator needs to recognise a certificate, and what the checks below read. */
export interface CertificateInfo {
  /** SHA-1 of the DER, lower-case hex: what node-opcua puts in file names and OPC UA tools show. */
  thumbprint: string;
  /** "CN=…, O=…" */
  subject: string;
  issuer: string;
  notBefore: Date;
  notAfter: Date;
  /** The URI in the subjectAltName, which OPC UA requires to equal the application's applicationUri. */
  applicationUri?: string;
  dnsNames: string[];
  ipAddresses: string[];
  isCa: boolean;
  selfSigned: boolean;
  /** The leaf certificate (DER) this describes. */
  der: Buffer;
}

/** The leaf of a DER certificate or of a DER chain (a server may send its chain in one buffer). */
export function leafCertificate(derOrChain: Buffer): Buffer {
  return split_der(derOrChain)[0] ?? derOrChain;
}

/** Parses one certificate (the leaf of a chain); a file that is not one is a CERT_MALFORMED KerfError. */
export function certificateInfo(derOrChain: Buffer, source = "certificate"): CertificateInfo {
  let cert: X509Certificate;
  let der: Buffer;
  try {
    der = leafCertificate(derOrChain);
    cert = new X509Certificate(der);
  } catch (err) {
    throw new KerfError("CERT_MALFORMED", `${source} is not an X.509 certificate (${(err as Error).message})`);
  }
  const san = sanOf(der);
  const ext = safeExplore(der)?.tbsCertificate.extensions;
  return {
    thumbprint: cert.fingerprint.replaceAll(":", "").toLowerCase(),
    subject: dn(cert.subject),
    issuer: dn(cert.issuer),
    notBefore: new Date(cert.validFrom),
    notAfter: new Date(cert.validTo),
    applicationUri: san.uris[0],
    dnsNames: san.dns,
    ipAddresses: san.ips,
    isCa: cert.ca || ext?.basicConstraints?.cA === true,
    selfSigned: cert.subject === cert.issuer && cert.checkIssued(cert),
    der,
  };
}

/** Every certificate in a PEM (one or many blocks) or DER file, leaf first. */
export function parseCertificates(bytes: Buffer, source: string): Buffer[] {
  const text = bytes.toString("latin1");
  if (text.includes("-----BEGIN")) {
    const blocks = [...text.matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g)].map((m) => Buffer.from(m[1]!.replace(/\s+/g, ""), "base64"));
    if (blocks.length === 0) throw new KerfError("CERT_MALFORMED", `${source} holds no PEM CERTIFICATE block`, { details: ["expected a PEM (-----BEGIN CERTIFICATE-----) or DER X.509 certificate"] });
    for (const b of blocks) certificateInfo(b, source);
    return blocks;
  }
  let parts: Buffer[];
  try {
    parts = split_der(bytes);
  } catch {
    parts = [];
  }
  if (parts.length === 0) throw new KerfError("CERT_MALFORMED", `${source} is neither a PEM nor a DER X.509 certificate`);
  for (const p of parts) certificateInfo(p, source);
  return parts;
}

export function formatValidity(info: CertificateInfo): string {
  return `${info.notBefore.toISOString().slice(0, 10)} to ${info.notAfter.toISOString().slice(0, 10)}`;
}

/** Why the certificate is not valid at `now`, if it is not. */
export function validityProblem(info: CertificateInfo, now = new Date()): string | undefined {
  if (now < info.notBefore) return `it is not valid before ${info.notBefore.toISOString()}`;
  if (now >= info.notAfter) return `it expired on ${info.notAfter.toISOString()}`;
  return undefined;
}

/** What `checkServerCertificate` needs: an EndpointDescription fits, or the two fields directly. */
export type ServerCertificateSource =
  | { serverCertificate?: Buffer | null; server?: { applicationUri?: string | null } | null }
  | { certificateDer: Buffer | null | undefined; applicationUri: string | null | undefined };

/**
 * Checks the server certificate beyond node-opcua's trust list, validity, CRL and chain checks:
 * that it belongs to the application that answered (applicationUri) and to the host we dialled
 * (subjectAltName DNS or IP), and that its key may sign and encrypt. A trusted certificate copied
 * onto another machine, or a machine's certificate presented by something else on the network,
 * fails here. Returns the reason to refuse, or undefined.
 *
 * With `allowHostnameMismatch` a host mismatch is only a warning (logged on each call, that is
 * on each connect), for legacy machines whose certificate names a host we cannot reach them by.
 * Pass the mode actually negotiated as `securityMode`: a None channel uses no certificate, so
 * there is nothing to check.
 */
export function checkServerCertificate(spec: Pick<EndpointSpec, "endpointUrl" | "securityMode" | "allowHostnameMismatch">, source: ServerCertificateSource, logger?: Logger): string | undefined {
  if (spec.securityMode === "None") return undefined;
  const der = "certificateDer" in source ? source.certificateDer : source.serverCertificate;
  const announcedUri = "certificateDer" in source ? source.applicationUri : source.server?.applicationUri;
  if (!der || der.length === 0) return "the server sent no certificate for a secured endpoint";
  let info: CertificateInfo;
  try {
    info = certificateInfo(der, "the server certificate");
  } catch (err) {
    return (err as Error).message;
  }
  const id = `the server certificate ${info.thumbprint} (${info.subject})`;

  const dates = validityProblem(info);
  if (dates) return `${id} is not valid: ${dates}`;

  if (!info.applicationUri) return `${id} has no applicationUri (URI) in its subjectAltName; OPC UA requires one`;
  if (!announcedUri) return `the server announces no applicationUri, so ${id} cannot be matched to it`;
  if (info.applicationUri !== announcedUri) {
    return `${id} names the application ${info.applicationUri}, but the server announces ${announcedUri}; the certificate does not belong to this server`;
  }

  const usage = keyUsageProblem(info.der);
  if (usage) return `${id}: ${usage}`;

  const host = hostOf(spec.endpointUrl);
  if (host !== undefined && !certificateNamesHost(info, host)) {
    const names = [...info.dnsNames, ...info.ipAddresses].join(", ") || "none";
    const problem = `${id} does not name the host ${host} in its subjectAltName (it names: ${names})`;
    if (!spec.allowHostnameMismatch) return `${problem}; connect by one of those names, or set allowHostnameMismatch: true for this machine`;
    logger?.warn({ endpoint: spec.endpointUrl, thumbprint: info.thumbprint, host, names }, `${problem}; accepted because allowHostnameMismatch is set for this machine`);
  }
  return undefined;
}

/** Whether the endpoint host is among the certificate's subjectAltName DNS names or IP addresses. */
export function certificateNamesHost(info: CertificateInfo, host: string): boolean {
  const cert = new X509Certificate(info.der);
  // subject "never": OPC UA names hosts in the subjectAltName; a CN is not a host name.
  return isIP(host) ? cert.checkIP(host) !== undefined : cert.checkHost(host, { subject: "never" }) !== undefined;
}

function keyUsageProblem(der: Buffer): string | undefined {
  const ext = safeExplore(der)?.tbsCertificate.extensions;
  const ku = ext?.keyUsage;
  // RFC 5280: no keyUsage extension means no restriction.
  if (ku && !ku.digitalSignature) return "its key usage does not allow digitalSignature, which the secure channel needs";
  if (ku && !ku.keyEncipherment && !ku.dataEncipherment) return "its key usage allows neither keyEncipherment nor dataEncipherment, which the secure channel needs";
  const eku = ext?.extKeyUsage;
  if (eku && Object.values(eku).some(Boolean) && !eku.serverAuth) return "its extended key usage lacks serverAuth (1.3.6.1.5.5.7.3.1), so it is not a server certificate";
  return undefined;
}

export function hostOf(endpointUrl: string): string | undefined {
  try {
    const host = new URL(endpointUrl).hostname;
    return host.startsWith("[") ? host.slice(1, -1) : host;
  } catch {
    return undefined;
  }
}

function sanOf(der: Buffer): { uris: string[]; dns: string[]; ips: string[] } {
  const san = safeExplore(der)?.tbsCertificate.extensions?.subjectAltName ?? {};
  return {
    uris: san.uniformResourceIdentifier ?? [],
    dns: san.dNSName ?? [],
    ips: (san.iPAddress ?? []).map(hexToIp),
  };
}

function hexToIp(hex: string): string {
  const b = Buffer.from(hex, "hex");
  if (b.length === 4) return [...b].join(".");
  if (b.length === 16) return (b.toString("hex").match(/.{4}/g) ?? []).map((g) => g.replace(/^0{1,3}/, "")).join(":").replace(/(^|:)0(:0)+(:|$)/, "::");
  return hex;
}

function safeExplore(der: Buffer) {
  try {
    return exploreCertificate(der);
  } catch {
    return undefined;
  }
}

/** Node prints a DN one attribute per line, in the certificate's order; OpenSSL's one-line form joins them. */
function dn(text: string): string {
  return text.split("\n").join(", ");
}
