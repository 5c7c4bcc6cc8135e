import { X509Certificate, createPrivateKey, randomBytes, type KeyObject } from "node:crypto";
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { KerfError } from "../errors.ts";

/**
 * Writes a file so that a crash leaves either the old or the new content, never half:
 * write a temp file beside it with the final mode, fsync, then rename over the target.
 * The mode is set at creation, so a private key is never readable by others, not even briefly.
 */
export function writeFileAtomic(file: string, content: string, mode: number): void {
  const tmp = join(dirname(file), `.${basename(file)}.${randomBytes(6).toString("hex")}.tmp`);
  const fd = openSync(tmp, "wx", mode);
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, file);
  // The rename itself is only durable once the directory entry is flushed.
  const dirFd = openSync(dirname(file), "r");
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}

export interface IdentityFiles {
  certPem: string;
  keyPem: string;
  certFile: string;
  keyFile: string;
  notAfter: Date;
}

/**
 * Loads an instance identity provisioned by the operator (cert and key files named in the
 * config) and checks that the two belong together, so a mix-up fails at startup with the
 * file names rather than later as an anonymous TLS refusal.
 */
export async function loadIdentityFiles(certFile: string, keyFile: string): Promise<IdentityFiles> {
  const certPem = readText(certFile, "certificate");
  const keyPem = readText(keyFile, "private key");
  const notAfter = checkCertMatchesKey(certPem, keyPem, `${certFile} / ${keyFile}`);
  return { certPem, keyPem, certFile, keyFile, notAfter };
}

/** Throws CERT_MALFORMED for what does not parse and CERT_KEY_MISMATCH unless the first certificate in certPem is for keyPem's key; returns its notAfter. */
export function checkCertMatchesKey(certPem: string, keyPem: string, where: string): Date {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch (err) {
    throw new KerfError("CERT_MALFORMED", `${where}: the certificate is not a valid PEM X.509 certificate (${(err as Error).message})`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    // The message of a key parse error never contains key material, only the reason.
    throw new KerfError("CERT_MALFORMED", `${where}: the private key is not a valid PEM key (${(err as Error).message})`);
  }
  if (!cert.checkPrivateKey(key)) {
    throw new KerfError("CERT_KEY_MISMATCH", `${where}: the certificate (subject '${cert.subject.replace(/\n/g, ", ")}') is for another key than the private key`);
  }
  return new Date(cert.validTo);
}

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (err) {
    throw new KerfError("CERT_FILE", `cannot read the ${what} file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}
