/**
 * The connector's OPC UA trust store (`<state-dir>/pki`, node-opcua's layout: trusted/certs,
 * rejected/, issuers/certs, trusted/crl, issuers/crl) as operators use it: what is in it and
 * `kerf trust accept | reject | add-issuer | add-crl`. Asking a server for its certificate is
 * probe.ts, explaining a refusal explain.ts, trust-on-first-use tofu.ts.
 *
 * node-opcua decides trust itself (dates, chain, CRL, trusted/ vs rejected/); this module only
 * moves files through its certificate manager and explains its verdicts.
 */
import { readdir, readFile, stat, unlink, writeFile, rename } from "node:fs/promises";
import { createHash } from "node:crypto";
import path from "node:path";
import type { OPCUACertificateManager } from "node-opcua-certificate-manager";
import { exploreCertificateRevocationList, toPem, verifyCrlIssuedByCertificate } from "node-opcua-crypto";
import { KerfError } from "../../errors.ts";
import { certificateInfo, parseCertificates, type CertificateInfo } from "./cert-checks.ts";

export type CertificateStoreName = "trusted" | "rejected" | "issuers";

const CERT_FOLDERS: Record<CertificateStoreName, string> = { trusted: "trusted/certs", rejected: "rejected", issuers: "issuers/certs" };
const CRL_FOLDERS = { trusted: "trusted/crl", issuers: "issuers/crl" } as const;

export interface StoredCertificate {
  store: CertificateStoreName;
  file: string;
  info: CertificateInfo;
  /** The file's certificates, leaf first (a rejected chain is stored whole). */
  chain: Buffer[];
  mtimeMs: number;
}

export interface StoredCrl {
  store: "trusted" | "issuers";
  file: string;
  /** SHA-1 of the CRL's DER. */
  thumbprint: string;
  /** Subject of the CA that issued it, when that CA is in the store; else its CN. */
  issuer: string;
  thisUpdate: Date;
  nextUpdate?: Date;
  revokedSerials: string[];
}

export interface TrustStoreContents {
  certificates: StoredCertificate[];
  crls: StoredCrl[];
  /** Files in the store folders that are not certificates or CRLs. */
  unreadable: string[];
}

/** Reads the store from disk (not from a manager's memory), so it sees what another process changed. */
export async function readTrustStore(root: string): Promise<TrustStoreContents> {
  const certificates: StoredCertificate[] = [];
  const crls: StoredCrl[] = [];
  const unreadable: string[] = [];
  for (const store of Object.keys(CERT_FOLDERS) as CertificateStoreName[]) {
    for (const file of await filesIn(path.join(root, CERT_FOLDERS[store]))) {
      try {
        const chain = parseCertificates(await readFile(file), file);
        certificates.push({ store, file, info: certificateInfo(chain[0]!, file), chain, mtimeMs: (await stat(file)).mtimeMs });
      } catch {
        unreadable.push(file);
      }
    }
  }
  const cas = certificates.filter((c) => c.store !== "rejected");
  for (const store of Object.keys(CRL_FOLDERS) as (keyof typeof CRL_FOLDERS)[]) {
    for (const file of await filesIn(path.join(root, CRL_FOLDERS[store]))) {
      try {
        const der = parseCrl(await readFile(file), file);
        const info = exploreCertificateRevocationList(der).tbsCertList;
        const ca = cas.find((c) => crlIssuedBy(der, c.info.der));
        crls.push({
          store,
          file,
          thumbprint: createHash("sha1").update(der).digest("hex"),
          issuer: ca?.info.subject ?? `CN=${info.issuer.commonName ?? "?"}`,
          thisUpdate: info.thisUpdate,
          nextUpdate: info.nextUpdate,
          revokedSerials: info.revokedCertificates.map((r) => r.userCertificate),
        });
      } catch {
        unreadable.push(file);
      }
    }
  }
  return { certificates, crls, unreadable };
}

/**
 * Finds a certificate by thumbprint: the whole SHA-1 (40 hex digits, colons allowed) or an
 * unambiguous prefix of at least 8. Throws a KerfError naming what the store holds otherwise.
 */
export function findByThumbprint(candidates: readonly StoredCertificate[], text: string, where: string): CertificateInfo {
  const wanted = text.replace(/[:\s]/g, "").toLowerCase();
  if (!/^[0-9a-f]{8,40}$/.test(wanted)) {
    throw new KerfError("USAGE", `'${text}' is not a certificate thumbprint (expected the SHA-1 thumbprint, 40 hex digits, or at least its first 8)`);
  }
  const found = new Map<string, CertificateInfo>();
  for (const c of candidates) if (c.info.thumbprint.startsWith(wanted)) found.set(c.info.thumbprint, c.info);
  if (found.size === 1) return [...found.values()][0]!;
  if (found.size > 1) {
    throw new KerfError("USAGE", `thumbprint prefix '${wanted}' matches ${found.size} certificates in ${where}; give more digits`, {
      details: [...found.values()].map((i) => `${i.thumbprint}  ${i.subject}`),
    });
  }
  const held = [...new Map(candidates.map((c) => [c.info.thumbprint, c.info])).values()];
  throw new KerfError("USAGE", `no certificate with thumbprint ${wanted} in ${where}`, {
    details: held.length ? ["there are:", ...held.map((i) => `  ${i.thumbprint}  ${i.subject}`)] : ["there are none (kerf trust list shows the whole store)"],
  });
}

export interface AcceptResult {
  info: CertificateInfo;
  /** It was trusted already (perhaps with a stale copy left in rejected/). */
  alreadyTrusted: boolean;
  /** Copies that were in rejected/ (none is left). */
  removedFromRejected: number;
}

/**
 * Moves a certificate from rejected/ to trusted/. node-opcua keeps refusing a certificate while
 * any copy of it is in rejected/ (it looks there first), so every copy goes, and the result is
 * read back from disk before we say it worked.
 */
export async function acceptCertificate(cm: OPCUACertificateManager, thumbprint: string): Promise<AcceptResult> {
  const root = cm.rootDir;
  const before = await readTrustStore(root);
  const info = findByThumbprint(before.certificates.filter((c) => c.store !== "issuers"), thumbprint, "rejected/ or trusted/");
  const copies = (store: CertificateStoreName, contents: TrustStoreContents) => contents.certificates.filter((c) => c.store === store && c.info.thumbprint === info.thumbprint);
  const alreadyTrusted = copies("trusted", before).length > 0;
  const rejected = copies("rejected", before);
  if (!alreadyTrusted || rejected.length > 0) await cm.trustCertificate(rejected[0]?.chain[0] ?? info.der);
  for (const c of copies("rejected", await readTrustStore(root))) await unlink(c.file).catch(ignoreMissing);
  const after = await readTrustStore(root);
  if (copies("trusted", after).length === 0 || copies("rejected", after).length > 0) {
    throw new KerfError("TRUST_STORE_WRITE", `certificate ${info.thumbprint} could not be moved to ${path.join(root, CERT_FOLDERS.trusted)} (check the folder's permissions)`);
  }
  return { info, alreadyTrusted, removedFromRejected: rejected.length };
}

/** Moves a trusted certificate to rejected/: the next connection to that server is refused. */
export async function rejectCertificate(cm: OPCUACertificateManager, thumbprint: string): Promise<{ info: CertificateInfo; alreadyRejected: boolean }> {
  const root = cm.rootDir;
  const before = await readTrustStore(root);
  const info = findByThumbprint(before.certificates.filter((c) => c.store !== "issuers"), thumbprint, "trusted/ or rejected/");
  const trusted = before.certificates.filter((c) => c.store === "trusted" && c.info.thumbprint === info.thumbprint);
  if (trusted.length === 0) return { info, alreadyRejected: true };
  await cm.rejectCertificate(trusted[0]!.chain[0]!);
  // Copies under other file names would keep it trusted for the next process that scans trusted/.
  const after = await readTrustStore(root);
  for (const c of after.certificates) if (c.store === "trusted" && c.info.thumbprint === info.thumbprint) await unlink(c.file).catch(ignoreMissing);
  return { info, alreadyRejected: false };
}

/**
 * Adds CA certificates (PEM or DER, one or a chain) to issuers/, so that chains of certificates
 * they issued can be verified. With `trusted`, the CAs also go to trusted/: then every
 * certificate they issue is trusted (a plant CA). node-opcua refuses certificates of a CA it
 * has no CRL for, so the caller should say so.
 */
export async function addIssuerFile(cm: OPCUACertificateManager, file: string, options: { trusted?: boolean } = {}): Promise<CertificateInfo[]> {
  const chain = parseCertificates(await readFileOrFail(file), file);
  const infos = chain.map((der) => certificateInfo(der, file));
  const notCa = infos.find((i) => !i.isCa);
  if (notCa) {
    throw new KerfError("TRUST_REFUSED", `${file}: ${notCa.subject} (${notCa.thumbprint}) is not a CA certificate (basicConstraints cA is not set)`, {
      details: ["add-issuer takes the certificate of the CA that issues machine certificates; a machine's own certificate is trusted with kerf trust accept"],
    });
  }
  for (const info of infos) {
    const status = await cm.addIssuer(info.der, false, options.trusted ?? false);
    if (String(status) !== "Good") throw new KerfError("TRUST_STORE_WRITE", `${file}: node-opcua did not add ${info.subject} as an issuer (${String(status)})`);
  }
  return infos;
}

/**
 * Adds a CRL (PEM or DER) after checking that a CA in the store issued and signed it, and
 * replaces that CA's older CRLs.
 *
 * It writes the file itself under a name of its own: node-opcua's addRevocationList reuses one
 * file name per CA, and a running connector's file watcher ignores a changed file (it only
 * reads added ones), so a new revocation would not count until the connector restarted.
 */
export async function addCrlFile(root: string, file: string): Promise<{ crl: StoredCrl; ca: CertificateInfo; replaced: number }> {
  const der = parseCrl(await readFileOrFail(file), file);
  const info = exploreCertificateRevocationList(der).tbsCertList;
  const store = await readTrustStore(root);
  const ca = store.certificates.find((c) => c.store !== "rejected" && c.info.isCa && crlIssuedBy(der, c.info.der));
  if (!ca) {
    throw new KerfError("TRUST_REFUSED", `${file}: no CA in the trust store issued this CRL (its issuer is CN=${info.issuer.commonName ?? "?"})`, {
      details: ["add the CA first: kerf trust add-issuer <ca-certificate-file>"],
    });
  }
  const older = store.crls.filter((c) => c.issuer === ca.info.subject);
  const newer = older.find((c) => c.thisUpdate > info.thisUpdate);
  if (newer) {
    throw new KerfError("TRUST_REFUSED", `${file}: the store holds a newer CRL of ${ca.info.subject} (this update ${newer.thisUpdate.toISOString()}, this one ${info.thisUpdate.toISOString()}); keeping the newer one`);
  }
  // A CA that is itself trusted keeps its CRLs beside it; one that only builds chains, in issuers/.
  const target = ca.store === "trusted" ? "trusted" : "issuers";
  const thumbprint = createHash("sha1").update(der).digest("hex");
  const dest = path.join(root, CRL_FOLDERS[target], `crl_[${info.issuerFingerprint.replace(/:/g, "")}]_${thumbprint.slice(0, 16)}.pem`);
  // Written beside the store, not in the watched folder, then renamed in: watchers see it whole.
  const tmp = path.join(root, `.crl-${thumbprint}.tmp`);
  await writeFile(tmp, toPem(der, "X509 CRL"));
  await rename(tmp, dest);
  // Only after the new one is in place, so that the CA is never without a CRL in between.
  let replaced = 0;
  for (const c of older) {
    if (path.resolve(c.file) === path.resolve(dest)) continue;
    await unlink(c.file).catch(ignoreMissing);
    replaced++;
  }
  return {
    ca: ca.info,
    replaced,
    crl: { store: target, file: dest, thumbprint, issuer: ca.info.subject, thisUpdate: info.thisUpdate, nextUpdate: info.nextUpdate, revokedSerials: info.revokedCertificates.map((r) => r.userCertificate) },
  };
}

/**
 * After a BadCertificateUntrusted verdict, make sure the certificate is in rejected/ (node-opcua
 * keeps what it refuses there) so that `kerf trust accept` can take it. When it is in trusted/ on
 * disk, an operator accepted it after the verdict: moving it back would silently undo that, so
 * leave it and report "trusted"; the next attempt connects.
 */
export async function keepRejected(cm: OPCUACertificateManager, chain: Buffer, thumbprint: string): Promise<"rejected" | "trusted"> {
  const onDisk = (await readTrustStore(cm.rootDir)).certificates.filter((c) => c.info.thumbprint === thumbprint);
  if (onDisk.some((c) => c.store === "trusted")) return "trusted";
  if (!onDisk.some((c) => c.store === "rejected")) await cm.rejectCertificate(chain);
  return "rejected";
}

/** `<state-dir>/pki` → `<state-dir>`; another layout gives the PKI folder's parent too. */
export function stateDirOf(pkiRoot: string): string {
  return path.dirname(path.resolve(pkiRoot));
}

function parseCrl(bytes: Buffer, file: string): Buffer {
  const text = bytes.toString("latin1");
  let der = bytes;
  if (text.includes("-----BEGIN")) {
    const m = /-----BEGIN (?:X509 )?CRL-----([\s\S]*?)-----END (?:X509 )?CRL-----/.exec(text);
    if (!m) throw new KerfError("CERT_MALFORMED", `${file} holds no PEM X509 CRL block`, { details: ["expected a PEM (-----BEGIN X509 CRL-----) or DER certificate revocation list"] });
    der = Buffer.from(m[1]!.replace(/\s+/g, ""), "base64");
  }
  try {
    exploreCertificateRevocationList(der);
  } catch (err) {
    throw new KerfError("CERT_MALFORMED", `${file} is not a certificate revocation list (${(err as Error).message})`);
  }
  return der;
}

function crlIssuedBy(crl: Buffer, ca: Buffer): boolean {
  try {
    return verifyCrlIssuedByCertificate(crl, ca);
  } catch {
    return false;
  }
}

async function readFileOrFail(file: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (err) {
    throw new KerfError("USAGE", `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

async function filesIn(dir: string): Promise<string[]> {
  try {
    const entries = await readdir(dir, { withFileTypes: true });
    return entries.filter((e) => e.isFile() && !e.name.startsWith(".")).map((e) => path.join(dir, e.name)).sort();
  } catch {
    return [];
  }
}

export function ignoreMissing(err: NodeJS.ErrnoException): void {
  if (err.code !== "ENOENT") throw err;
}
