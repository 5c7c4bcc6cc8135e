import { X509Certificate, createPrivateKey } from "node:crypto";
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { CertificatePurpose, createSelfSignedCertificate } from "node-opcua-crypto";
import { writeFileAtomic } from "../../certs/files.ts";
import { generateKeyPair, privateKeyToPem } from "../../certs/x509.ts";
import { KerfError } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import { certificateInfo, type CertificateInfo } from "./cert-checks.ts";

/**
 * The lifecycle of the connector's own OPC UA application instance certificate (issue 14):
 * expiry, and renewal by a staged certificate that becomes current only once the machines have
 * accepted it. Files, all under `<state-dir>/pki/own`:
 *
 *   certs/client_certificate.pem            current (what node-opcua made on first start)
 *   private/private_key.pem                 its key
 *   certs/client_certificate.next.pem|.der  staged by `kerf pki renew`; .der to copy to a machine
 *   private/private_key.next.pem
 *   certs/client_certificate.previous.pem   the one before the last promotion, and its key
 *   private/private_key.previous.pem
 *
 * Promotion renames the staged key, then the staged certificate, over the current ones; a crash
 * between the two renames is completed at the next start (see recover()).
 */

/** Warn this many days before the application certificate expires (log and health). */
export const EXPIRY_WARNING_DAYS = 30;
/** Validity of the certificates Kerf makes: the first (openClientPki) and each renewal. */
export const APPLICATION_CERTIFICATE_DAYS = 730;
/** After a machine refused the staged certificate, it is tried again on that machine after this long. */
export const RENEWAL_RETRY_MS = 2 * 60_000;
const DAY_MS = 86_400_000;

type Slot = "current" | "next" | "previous";

/** The certificate and key files of a slot in the PKI root. */
export function slotFiles(root: string, slot: Slot): { certificateFile: string; privateKeyFile: string } {
  const suffix = slot === "current" ? "" : `.${slot}`;
  return {
    certificateFile: path.join(root, "own/certs", `client_certificate${suffix}.pem`),
    privateKeyFile: path.join(root, "own/private", `private_key${suffix}.pem`),
  };
}

/** A certificate and its key, read into memory: what one connect attempt uses, whatever happens to the files meanwhile. */
export interface AppCertificate {
  certificateFile: string;
  privateKeyFile: string;
  der: Buffer;
  keyPem: string;
  info: CertificateInfo;
  /** The renewal staged by `kerf pki renew`, not yet current. */
  staged: boolean;
}

function readSlot(root: string, slot: Slot): AppCertificate | null {
  const files = slotFiles(root, slot);
  if (!existsSync(files.certificateFile) || !existsSync(files.privateKeyFile)) return null;
  const der = new X509Certificate(readFileSync(files.certificateFile)).raw;
  const keyPem = readFileSync(files.privateKeyFile, "utf8");
  return { ...files, der, keyPem, info: certificateInfo(der, files.certificateFile), staged: slot === "next" };
}

function matches(certificateFile: string, privateKeyFile: string): boolean {
  try {
    return new X509Certificate(readFileSync(certificateFile)).checkPrivateKey(createPrivateKey(readFileSync(privateKeyFile)));
  } catch {
    return false;
  }
}

/** Days from `now` to the certificate's notAfter, rounded down; negative once expired. */
export function daysLeft(info: CertificateInfo, now = Date.now()): number {
  return Math.floor((info.notAfter.getTime() - now) / DAY_MS);
}

export interface AppCertificateStatus {
  thumbprint: string;
  notAfter: string;
  daysLeft: number;
  expired: boolean;
  /** A renewal waiting to become current: which machines connected with it, which not yet. */
  staged?: { thumbprint: string; notAfter: string; file: string; acceptedBy: string[]; waitingFor: string[] };
}

/**
 * Shared by every machine session of the process (there is one application certificate). Each
 * connect attempt asks choose(); a session established with the staged certificate counts as
 * that machine accepting it; once every machine of the connector has, it is promoted.
 */
export class ApplicationCertificate {
  readonly #root: string;
  readonly #log: Logger;
  #current: AppCertificate;
  #staged: { cert: AppCertificate; mtimeMs: number } | null = null;
  readonly #machines = new Set<string>();
  readonly #accepted = new Set<string>();
  readonly #refusedAt = new Map<string, number>();
  readonly #everRefused = new Set<string>();

  constructor(root: string, logger: Logger) {
    this.#root = root;
    this.#log = logger;
    recover(root);
    const current = readSlot(root, "current");
    if (!current) throw new KerfError("CERT_FILE", `no OPC UA application certificate in ${path.join(root, "own")}`);
    this.#current = current;
  }

  get current(): AppCertificate {
    return this.#current;
  }

  /** The renewal staged by `kerf pki renew` (re-read when its file changes), or null. */
  staged(): AppCertificate | null {
    const { certificateFile, privateKeyFile } = slotFiles(this.#root, "next");
    let mtimeMs: number;
    try {
      mtimeMs = statSync(certificateFile).mtimeMs;
    } catch {
      this.#staged = null;
      return null;
    }
    if (this.#staged?.mtimeMs === mtimeMs) return this.#staged.cert;
    // A renewal written just now may have its key but not yet its certificate, or the reverse.
    const cert = matches(certificateFile, privateKeyFile) ? readSlot(this.#root, "next") : null;
    if (!cert) return null;
    this.#staged = { cert, mtimeMs };
    this.#accepted.clear();
    this.#refusedAt.clear();
    this.#everRefused.clear();
    this.#log.info({ thumbprint: cert.info.thumbprint, file: certificateFile }, "a renewed OPC UA application certificate is staged; each machine tries it on its next connection");
    return cert;
  }

  /** A machine whose session uses this certificate; promotion waits for all of them. */
  register(machine: string): void {
    this.#machines.add(machine);
  }

  unregister(machine: string): void {
    this.#machines.delete(machine);
  }

  /** What the next connect attempt to `machine` uses: the staged certificate unless that machine refused it lately. */
  choose(machine: string, now = Date.now(), retryMs = RENEWAL_RETRY_MS): AppCertificate {
    const staged = this.staged();
    if (staged && (this.#accepted.has(machine) || !this.#refusedRecently(machine, now, retryMs))) return staged;
    return this.#current;
  }

  /** The staged certificate when `machine`, connected on the current one, should try it again now. */
  trialDue(machine: string, now = Date.now(), retryMs = RENEWAL_RETRY_MS): AppCertificate | null {
    const staged = this.staged();
    if (!staged || this.#accepted.has(machine) || this.#refusedRecently(machine, now, retryMs)) return null;
    return staged;
  }

  /**
   * The machine's server refused the staged certificate: the current one goes on, and it is tried
   * again after the retry time. True the first time this machine refuses this certificate.
   */
  refused(machine: string, cert: AppCertificate, now = Date.now()): boolean {
    if (!this.#isStaged(cert)) return false;
    this.#accepted.delete(machine);
    const first = !this.#everRefused.has(machine);
    this.#everRefused.add(machine);
    this.#refusedAt.set(machine, now);
    return first;
  }

  /** A session with `cert` is established; promotes the staged certificate once every machine has connected with it. */
  established(machine: string, cert: AppCertificate): void {
    if (!this.#isStaged(cert)) return;
    this.#accepted.add(machine);
    this.#refusedAt.delete(machine);
    const waitingFor = [...this.#machines].filter((m) => !this.#accepted.has(m));
    if (waitingFor.length > 0) {
      this.#log.info({ machine, thumbprint: cert.info.thumbprint, waitingFor }, "connected with the renewed OPC UA application certificate; it becomes current once the other machines accept it too");
      return;
    }
    this.#promote();
  }

  status(now = Date.now()): AppCertificateStatus {
    const info = this.#current.info;
    const staged = this.staged();
    return {
      thumbprint: info.thumbprint,
      notAfter: info.notAfter.toISOString(),
      daysLeft: daysLeft(info, now),
      expired: info.notAfter.getTime() <= now,
      ...(staged
        ? {
            staged: {
              thumbprint: staged.info.thumbprint,
              notAfter: staged.info.notAfter.toISOString(),
              file: staged.certificateFile,
              acceptedBy: [...this.#accepted].sort(),
              waitingFor: [...this.#machines].filter((m) => !this.#accepted.has(m)).sort(),
            },
          }
        : {}),
    };
  }

  #isStaged(cert: AppCertificate): boolean {
    return cert.staged && this.#staged !== null && this.#staged.cert.info.thumbprint === cert.info.thumbprint;
  }

  #refusedRecently(machine: string, now: number, retryMs: number): boolean {
    const at = this.#refusedAt.get(machine);
    return at !== undefined && now - at < retryMs;
  }

  /** The staged certificate becomes current; the current one is kept as previous. */
  #promote(): void {
    const root = this.#root;
    const current = slotFiles(root, "current");
    const next = slotFiles(root, "next");
    const previous = slotFiles(root, "previous");
    const old = this.#current;
    writeFileAtomic(previous.privateKeyFile, old.keyPem, 0o600);
    writeFileAtomic(previous.certificateFile, readFileSync(current.certificateFile, "utf8"), 0o644);
    // key first: a crash before the certificate's rename is completed by recover()
    renameSync(next.privateKeyFile, current.privateKeyFile);
    syncDir(path.dirname(current.privateKeyFile));
    renameSync(next.certificateFile, current.certificateFile);
    syncDir(path.dirname(current.certificateFile));
    rmSync(derCopy(next.certificateFile), { force: true });
    this.#current = readSlot(root, "current")!;
    this.#staged = null;
    this.#accepted.clear();
    this.#refusedAt.clear();
    this.#everRefused.clear();
    this.#log.info(
      { thumbprint: this.#current.info.thumbprint, notAfter: this.#current.info.notAfter.toISOString(), previous: old.info.thumbprint, previousFile: previous.certificateFile },
      "every machine connected with the renewed OPC UA application certificate: it is now the current one; the old one is kept as previous",
    );
  }
}

/** The .der copy written beside a staged certificate, for machines that import DER only. */
export function derCopy(certificateFile: string): string {
  return certificateFile.replace(/\.pem$/, ".der");
}

function syncDir(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * A promotion cut short between its two renames leaves the new key beside the old certificate:
 * finish it. Any other mismatch of the current pair is an error naming the files.
 */
function recover(root: string): void {
  const current = slotFiles(root, "current");
  if (!existsSync(current.certificateFile) || !existsSync(current.privateKeyFile) || matches(current.certificateFile, current.privateKeyFile)) return;
  const next = slotFiles(root, "next");
  if (existsSync(next.certificateFile) && matches(next.certificateFile, current.privateKeyFile)) {
    renameSync(next.certificateFile, current.certificateFile);
    syncDir(path.dirname(current.certificateFile));
    rmSync(derCopy(next.certificateFile), { force: true });
    return;
  }
  throw new KerfError("CERT_KEY_MISMATCH", `${current.certificateFile} is not the certificate of ${current.privateKeyFile}`, {
    details: [`the previous pair (if any) is ${slotFiles(root, "previous").certificateFile}; restore a matching pair, or move both away to have a new certificate made (it must be trusted on the machines again)`],
  });
}

/**
 * Makes a new application certificate and key beside the current ones (`kerf pki renew`): RSA
 * 2048 (node-opcua's policies need RSA), self-signed, with the current one's subject,
 * applicationUri and DNS names. The key is written first, so a half-written renewal is never
 * taken for a staged one. Returns the staged certificate.
 */
export async function stageRenewal(root: string, now = Date.now()): Promise<AppCertificate> {
  recover(root);
  const current = readSlot(root, "current");
  if (!current) throw new KerfError("CERT_FILE", `no OPC UA application certificate in ${path.join(root, "own")} to renew`);
  const subject = "/" + new X509Certificate(current.der).subject.split("\n").join("/");
  const keys = await generateKeyPair("rsa");
  const { cert } = await createSelfSignedCertificate({
    privateKey: keys.privateKey,
    notBefore: new Date(now - 60_000),
    validity: APPLICATION_CERTIFICATE_DAYS,
    subject,
    dns: current.info.dnsNames,
    ip: current.info.ipAddresses,
    ...(current.info.applicationUri ? { applicationUri: current.info.applicationUri } : {}),
    purpose: CertificatePurpose.ForApplication,
  });
  const next = slotFiles(root, "next");
  writeFileAtomic(next.privateKeyFile, await privateKeyToPem(keys.privateKey), 0o600);
  writeFileAtomic(next.certificateFile, cert.endsWith("\n") ? cert : cert + "\n", 0o644);
  const staged = readSlot(root, "next")!;
  // a convenience copy for the machine, not read back: a plain write will do
  writeFileSync(derCopy(next.certificateFile), staged.der, { mode: 0o644 });
  return staged;
}

/** The staged renewal on disk, if a complete one is there. */
export function readStaged(root: string): AppCertificate | null {
  const next = slotFiles(root, "next");
  return matches(next.certificateFile, next.privateKeyFile) ? readSlot(root, "next") : null;
}

/** The certificate named `slot`, read for display (kerf pki status). */
export function readSlotInfo(root: string, slot: Slot): AppCertificate | null {
  return readSlot(root, slot);
}

/**
 * What the expiry watch says about the current certificate, or null while more than
 * EXPIRY_WARNING_DAYS are left. An expired one is an error: the machines refuse it.
 */
export function expiryNotice(status: AppCertificateStatus, stateDir: string): { level: "warn" | "error"; message: string } | null {
  if (!status.expired && status.daysLeft >= EXPIRY_WARNING_DAYS) return null;
  const command = `kerf pki renew --state-dir ${stateDir}`;
  const staged = status.staged;
  const next = staged
    ? `a renewed certificate is staged (thumbprint ${staged.thumbprint}, file ${staged.file}); trust it on ${staged.waitingFor.length > 0 ? `these machines: ${staged.waitingFor.join(", ")}` : "the machines"}`
    : `run ${command} and trust the thumbprint it prints on each machine`;
  if (status.expired) {
    return { level: "error", message: `the connector's OPC UA application certificate (thumbprint ${status.thumbprint}) expired on ${status.notAfter}; machines refuse it: ${next}` };
  }
  return { level: "warn", message: `the connector's OPC UA application certificate (thumbprint ${status.thumbprint}) expires in ${status.daysLeft} days, on ${status.notAfter}: ${next}` };
}
