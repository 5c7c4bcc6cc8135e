/**
 * The instance identity: a key generated on the instance (EC P-256, or RSA-2048 when asked; it
 * never leaves the state directory and is never logged) and the client certificate the cloud
 * issued for it. Enrolment goes through the `Enroller` seam: EST (est.ts) in production, the
 * dev CA in-process for a few tests.
 *
 * Layout of the identity directory (mode 0700):
 *   client.key, client.pem   the identity in service (key 0600)
 *   instance-id              the stable instance id (see instanceIdOf), written with the first key
 *   next/client.{key,pem}    a renewal in progress (renewal.ts), promoted once it has worked
 *   bootstrap-token.sha256   the hash of the bootstrap token spent, so that no restart spends it again
 * A crash at any moment leaves a usable pair among these files; loadIdentity finds it.
 */
import { X509Certificate, createHash, createPublicKey } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { KerfError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { checkInstanceName, type CertAuthority } from "./devca.ts";
import { checkCertMatchesKey, writeFileAtomic, type IdentityFiles } from "./files.ts";
import { publicKeyPin } from "./pins.ts";
import { generateKeyPair, keyPairFromPem, privateKeyToPem, signingAlgorithmFor, x509, type KeyType } from "./x509.ts";

export interface Enroller {
  /** Sends a PKCS#10 request and resolves to the issued certificate, PEM, leaf first (intermediates may follow). */
  enroll(csrPem: string): Promise<string>;
}

export interface Identity extends IdentityFiles {
  /** Stable across renewals and rekeys: derived from the instance's first key (instanceIdOf). */
  instanceId: string;
}

export interface EnsureIdentityOptions {
  dir: string;
  instance: string;
  /** Type of a key generated on first start. Default "ec" (P-256). */
  keyType?: KeyType | undefined;
  /** Needed only when there is no valid certificate yet. */
  enroller?: Enroller | undefined;
  logger: Logger;
}

/** The files of an identity directory. */
export function identityPaths(dir: string) {
  const next = join(dir, "next");
  return {
    dir,
    key: join(dir, "client.key"),
    cert: join(dir, "client.pem"),
    instanceId: join(dir, "instance-id"),
    usedToken: join(dir, "bootstrap-token.sha256"),
    refusedToken: join(dir, "bootstrap-token.refused"),
    next,
    nextKey: join(next, "client.key"),
    nextCert: join(next, "client.pem"),
  };
}

/**
 * The instance id: the first 16 bytes of the SHA-256 of the first key's SubjectPublicKeyInfo,
 * in hex. Unique per installation (the key is generated there) and recorded in `instance-id`,
 * so that a rekey does not change it.
 */
export function instanceIdOf(keyPem: string): string {
  const spki = createPublicKey(keyPem).export({ type: "spki", format: "der" });
  return createHash("sha256").update(spki).digest("hex").slice(0, 32);
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
  const files = identityPaths(dir);

  if (!existsSync(files.key)) {
    const keyType = options.keyType ?? "ec";
    const keys = await generateKeyPair(keyType);
    const keyPem = await privateKeyToPem(keys.privateKey);
    writeFileAtomic(files.key, keyPem, 0o600);
    writeFileAtomic(files.instanceId, instanceIdOf(keyPem) + "\n", 0o644);
    logger.info({ file: files.key, keyPin: publicKeyPin(keyPem), instanceId: instanceIdOf(keyPem) }, `generated a new instance key (${keyType === "ec" ? "EC P-256" : "RSA 2048"})`);
  }
  // A key copied in by hand may have come with a permissive mode; tighten it rather than refuse.
  if ((statSync(files.key).mode & 0o077) !== 0) {
    chmodSync(files.key, 0o600);
    logger.warn({ file: files.key }, "instance key file was readable by others; its mode is now 0600");
  }

  const loaded = loadIdentity(dir, instance, logger);
  if ("certPem" in loaded) return loaded;
  if (existsSync(files.cert)) logger.warn({ file: files.cert, problem: loaded.problem }, "instance certificate is not usable; enrolling again with the same key");

  if (!options.enroller) {
    throw new KerfError("CERT_ENROLMENT", `no usable instance certificate in ${files.cert} and no enroller configured: provide cloud.identity certificate and key files, or an enrolment method`);
  }
  const keyPem = readFileSync(files.key, "utf8");
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
  writeFileAtomic(files.cert, chainPem, 0o644);
  const notAfter = new Date(new X509Certificate(chainPem).validTo);
  const instanceId = recordedInstanceId(files, keyPem);
  logger.info({ file: files.cert, instance, instanceId, notAfter: notAfter.toISOString() }, "enrolled instance certificate");
  return { certPem: chainPem, keyPem, certFile: files.cert, keyFile: files.key, notAfter, instanceId };
}

/**
 * The usable identity in `dir`, or why there is none. After a crash in the middle of a
 * renewal the pair in service may be mixed (a new key beside the old certificate): then the
 * usable pair among the current and staged files is put in service, newest first.
 */
export function loadIdentity(dir: string, instance: string, logger: Logger, now = new Date()): Identity | { problem: string; expiredAt?: Date } {
  const files = identityPaths(dir);
  const read = (file: string) => (existsSync(file) ? readFileSync(file, "utf8") : null);
  const key = read(files.key);
  if (key === null) return { problem: `there is no instance key ${files.key}` };
  const cert = read(files.cert);
  const current = cert === null ? `there is no certificate ${files.cert}` : certProblem(cert, key, instance, now);
  const identity = (certPem: string, keyPem: string): Identity => ({
    certPem,
    keyPem,
    certFile: files.cert,
    keyFile: files.key,
    notAfter: new Date(new X509Certificate(certPem).validTo),
    instanceId: recordedInstanceId(files, keyPem),
  });
  if (current === null) {
    // An unfinished renewal that never worked: the identity in service stays, the renewal starts again.
    if (existsSync(files.next)) rmSync(files.next, { recursive: true, force: true });
    return identity(cert!, key);
  }
  const keys = [key, read(files.nextKey)].filter((k): k is string => k !== null);
  const certs = [read(files.nextCert), cert].filter((c): c is string => c !== null);
  const usable = certs
    .flatMap((c) => keys.map((k) => ({ c, k })))
    .filter(({ c, k }) => certProblem(c, k, instance, now) === null)
    .sort((a, b) => new Date(new X509Certificate(b.c).validTo).getTime() - new Date(new X509Certificate(a.c).validTo).getTime())[0];
  if (!usable) {
    const expired = cert !== null && /^it expired on/.test(current) ? new Date(new X509Certificate(cert).validTo) : undefined;
    return { problem: current, ...(expired ? { expiredAt: expired } : {}) };
  }
  // Key first: a crash between the two writes leaves the new key with the staged certificate, which this finds again.
  if (usable.k !== key) writeFileAtomic(files.key, usable.k, 0o600);
  writeFileAtomic(files.cert, usable.c, 0o644);
  rmSync(files.next, { recursive: true, force: true });
  logger.warn({ file: files.cert, was: current }, "completed an interrupted certificate renewal: the staged identity is now in service");
  return identity(usable.c, usable.k);
}

function recordedInstanceId(files: ReturnType<typeof identityPaths>, keyPem: string): string {
  const recorded = existsSync(files.instanceId) ? readFileSync(files.instanceId, "utf8").trim() : "";
  if (/^[0-9a-f]{32}$/.test(recorded)) return recorded;
  const id = instanceIdOf(keyPem);
  writeFileAtomic(files.instanceId, id + "\n", 0o644);
  return id;
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
export function certProblem(certPem: string, keyPem: string, instance: string, now: Date): string | null {
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
