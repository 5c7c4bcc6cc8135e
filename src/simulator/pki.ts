import { randomBytes, X509Certificate } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { OPCUACertificateManager } from "node-opcua-certificate-manager";
import { ConnectorCertificateManager } from "../opcua/trust/pki.ts";
import { KerfError } from "../errors.ts";
import { SIMULATOR_NAMESPACE_URI } from "./nodes.ts";

export interface ServerPki {
  /** Trust store and own key pair of the server (secure channels). */
  certificateManager: OPCUACertificateManager;
  /** Trust store for X.509 user identity tokens, kept apart so an application certificate is not a login. */
  userCertificateManager: OPCUACertificateManager;
  certificateFile: string;
  certificateDer: Buffer;
  /** SHA-1 thumbprint, lower-case hex: what OPC UA tools show. */
  thumbprint: string;
  /** The applicationUri from the certificate's SAN; the server must announce the same one. */
  applicationUri: string;
}

export const SUBJECT = "/CN=Kerf Simulator/O=Kerf";

/**
 * Opens (or creates on first use) the simulator's PKI under `pkiDir`.
 *
 * node-opcua would otherwise create a certificate with its vendor's subject and this host's
 * name in the applicationUri; ours names Kerf and carries a random id instead of the hostname,
 * so a copied state directory does not leak where it was made.
 */
export async function openServerPki(pkiDir: string, options: { watchTrustStore?: boolean; hosts?: string[] } = {}): Promise<ServerPki> {
  const disableFileWatchers = !options.watchTrustStore;
  // trustClientCertificate must stick even while a refused attempt of that certificate is still being recorded
  const certificateManager = new ConnectorCertificateManager({
    rootFolder: pkiDir,
    automaticallyAcceptUnknownCertificate: false,
    keySize: 2048,
    disableFileWatchers,
  });
  const userCertificateManager = new OPCUACertificateManager({
    rootFolder: path.join(pkiDir, "user"),
    automaticallyAcceptUnknownCertificate: false,
    keySize: 2048,
    disableFileWatchers,
  });
  try {
    await Promise.all([certificateManager.initialize(), userCertificateManager.initialize()]);
    // node-opcua's server looks for its certificate exactly here when given a certificate manager.
    const certificateFile = path.join(certificateManager.rootDir, "own/certs/certificate.pem");
    if (!(await exists(certificateFile))) {
      const { dns, ip } = sanFor(options.hosts ?? []);
      await certificateManager.createSelfSignedCertificate({
        subject: SUBJECT,
        applicationUri: `${SIMULATOR_NAMESPACE_URI}:${randomBytes(6).toString("hex")}`,
        dns,
        ip,
        startDate: new Date(Date.now() - 60_000), // a little slack for clients whose clock lags
        validity: 3650,
        outputFile: certificateFile,
      });
    }
    const cert = new X509Certificate(await fs.readFile(certificateFile));
    const applicationUri = sanUri(cert);
    if (!applicationUri) {
      throw new KerfError("CERT_UNSUITABLE", `simulator certificate ${certificateFile} has no URI in its subjectAltName`, {
        details: ["expected a URI such as urn:kerf:simulator:<id>; delete the file to have a new one made"],
      });
    }
    return {
      certificateManager,
      userCertificateManager,
      certificateFile,
      certificateDer: cert.raw,
      thumbprint: cert.fingerprint.replaceAll(":", "").toLowerCase(),
      applicationUri,
    };
  } catch (err) {
    await disposeQuietly(certificateManager);
    await disposeQuietly(userCertificateManager);
    throw err;
  }
}

export async function disposeQuietly(cm: OPCUACertificateManager): Promise<void> {
  try {
    await cm.dispose();
  } catch {
    // already disposed: nothing left to release
  }
}

function sanFor(hosts: string[]): { dns: string[]; ip: string[] } {
  const dns = new Set(["localhost"]);
  const ip = new Set(["127.0.0.1"]);
  for (const h of hosts) {
    if (h === "0.0.0.0" || h === "::" || h === "") continue;
    if (/^[0-9.]+$/.test(h) || h.includes(":")) ip.add(h);
    else dns.add(h);
  }
  return { dns: [...dns], ip: [...ip] };
}

function sanUri(cert: X509Certificate): string | undefined {
  for (const part of (cert.subjectAltName ?? "").split(/,\s*/)) {
    if (part.startsWith("URI:")) return part.slice(4);
  }
  return undefined;
}

async function exists(file: string): Promise<boolean> {
  try {
    await fs.access(file);
    return true;
  } catch {
    return false;
  }
}
