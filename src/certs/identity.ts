/**
 * The instance identity: an EC P-256 key generated on the instance (it never leaves it) and
 * the client certificate the cloud issued for it. Enrolment goes through the `Enroller` seam;
 * the dev CA implements it here and EST will later.
 */
import { X509Certificate } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { KerfError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { checkInstanceName, type CertAuthority } from "./devca.ts";
import { checkCertMatchesKey, writeFileAtomic, type IdentityFiles } from "./files.ts";
import { publicKeyPin } from "./pins.ts";
import { generateKeyPair, keyPairFromPem, privateKeyToPem, signingAlgorithmFor, x509 } from "./x509.ts";

export interface Enroller {
  /** Sends a PKCS#10 request and resolves to the issued certificate, PEM, leaf first (intermediates may follow). */
  enroll(csrPem: string): Promise<string>;
}

export type Identity = IdentityFiles;

export interface EnsureIdentityOptions {
  dir: string;
  instance: string;
  /** Needed only when there is no valid certificate yet. */
  enroller?: Enroller | undefined;
  logger: Logger;
}

/**
 * Returns the instance identity from `dir`, creating what is missing: the key (client.key,
 * mode 0600) on first start, and the certificate (client.pem) whenever there is none that is
 * valid for this key and instance. A certificate the enroller returns is checked before it
 * is written; a wrong one is refused and the existing files are left as they were.
 */
export async function ensureIdentity(options: EnsureIdentityOptions): Promise<Identity> {
  const { dir, instance, logger } = options;
  checkInstanceName(instance);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const keyFile = join(dir, "client.key");
  const certFile = join(dir, "client.pem");

  let keyPem: string;
  if (existsSync(keyFile)) {
    keyPem = readFileSync(keyFile, "utf8");
    // A key copied in by hand may have come with a permissive mode; tighten it rather than refuse.
    if ((statSync(keyFile).mode & 0o077) !== 0) {
      chmodSync(keyFile, 0o600);
      logger.warn({ file: keyFile }, "instance key file was readable by others; its mode is now 0600");
    }
  } else {
    const keys = await generateKeyPair("ec");
    keyPem = await privateKeyToPem(keys.privateKey);
    writeFileAtomic(keyFile, keyPem, 0o600);
    logger.info({ file: keyFile, keyPin: publicKeyPin(keyPem) }, "generated a new instance key (EC P-256)");
  }

  if (existsSync(certFile)) {
    const certPem = readFileSync(certFile, "utf8");
    const problem = certProblem(certPem, keyPem, instance, new Date());
    if (problem === null) return { certPem, keyPem, certFile, keyFile, notAfter: new Date(new X509Certificate(certPem).validTo) };
    logger.warn({ file: certFile, problem }, "instance certificate is not usable; enrolling again with the same key");
  }

  if (!options.enroller) {
    throw new KerfError("CERT_ENROLMENT", `no usable instance certificate in ${certFile} and no enroller configured: provide cloud.identity certificate and key files, or an enrolment method`);
  }
  const csrPem = await createCsr(keyPem, instance);
  let chainPem: string;
  try {
    chainPem = await options.enroller.enroll(csrPem);
  } catch (err) {
    if (err instanceof KerfError) throw err;
    throw new KerfError("CERT_ENROLMENT", `enrolment of instance '${instance}' failed: ${(err as Error).message}`, { cause: err });
  }
  const problem = certProblem(chainPem, keyPem, instance, new Date());
  if (problem !== null) throw new KerfError("CERT_ENROLMENT", `the enrolment service returned an unusable certificate for instance '${instance}': ${problem}`);
  writeFileAtomic(certFile, chainPem, 0o644);
  const notAfter = new Date(new X509Certificate(chainPem).validTo);
  logger.info({ file: certFile, instance, notAfter: notAfter.toISOString() }, "enrolled instance certificate");
  return { certPem: chainPem, keyPem, certFile, keyFile, notAfter };
}

/** A PKCS#10 request for CN=<instance>, SAN URI urn:kerf:<instance>, signed with the instance key. */
export async function createCsr(keyPem: string, instance: string): Promise<string> {
  const keys = await keyPairFromPem(keyPem);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${instance}`,
    keys,
    signingAlgorithm: signingAlgorithmFor(keys.privateKey),
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: "url", value: `urn:kerf:${instance}` }])],
  });
  return csr.toString("pem") + "\n";
}

/** Why a certificate cannot serve as this instance's identity, or null if it can. */
function certProblem(certPem: string, keyPem: string, instance: string, now: Date): string | null {
  try {
    checkCertMatchesKey(certPem, keyPem, "certificate");
  } catch (err) {
    return (err as Error).message.replace(/^certificate: /, "");
  }
  const cert = new X509Certificate(certPem);
  const cn = /(?:^|\n)CN=([^\n]*)/.exec(cert.subject)?.[1];
  const uris = (cert.subjectAltName ?? "").split(", ").filter((n) => n.startsWith("URI:")).map((n) => n.slice(4));
  if (cn !== instance && !uris.includes(`urn:kerf:${instance}`)) {
    return `it names '${cn ?? cert.subject}' (SAN ${cert.subjectAltName ?? "none"}), expected CN=${instance} or SAN URI urn:kerf:${instance}`;
  }
  if (new Date(cert.validFrom) > now) return `it is not valid before ${new Date(cert.validFrom).toISOString()}`;
  if (new Date(cert.validTo) <= now) return `it expired on ${new Date(cert.validTo).toISOString()}`;
  const eku = cert.keyUsage;
  if (eku && eku.length > 0 && !eku.includes("1.3.6.1.5.5.7.3.2")) return `its extended key usage (${eku.join(", ")}) does not allow TLS client authentication`;
  return null;
}

/**
 * Enrols against the dev CA in-process. The instance name comes from the request's CN, which
 * only a development CA may trust; a real enrolment service authenticates the requester.
 */
export class DevCaEnroller implements Enroller {
  readonly #ca: CertAuthority;
  readonly #validity: { notBefore?: Date; notAfter?: Date };

  constructor(ca: CertAuthority, validity: { notBefore?: Date; notAfter?: Date } = {}) {
    this.#ca = ca;
    this.#validity = validity;
  }

  async enroll(csrPem: string): Promise<string> {
    const csr = new x509.Pkcs10CertificateRequest(csrPem);
    const instance = /(?:^|,\s*)CN=([^,]+)/.exec(csr.subject)?.[1];
    if (!instance) throw new KerfError("CERT_REQUEST_INVALID", `the certificate request has no CN (subject '${csr.subject}')`);
    return this.#ca.issueClientCert({ instance, csrPem, ...this.#validity });
  }
}
