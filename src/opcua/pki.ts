import { X509Certificate } from "node:crypto";
import { existsSync } from "node:fs";
import { readdir, readFile, unlink } from "node:fs/promises";
import path from "node:path";
import { OPCUACertificateManager } from "node-opcua-certificate-manager";
import type { Logger } from "../log.ts";

export interface ClientPki {
  certificateManager: OPCUACertificateManager;
  applicationUri: string;
  certificateFile: string;
  privateKeyFile: string;
  certificateDer: Buffer;
}

/**
 * The connector's OPC UA application instance PKI under `<state-dir>/pki`
 * (own, trusted, rejected, issuers, CRLs). Unknown server certificates are
 * refused: node-opcua's default manager would accept them automatically.
 */
export async function openClientPki(options: { dir: string; instance: string; logger: Logger }): Promise<ClientPki> {
  const { dir, instance, logger } = options;
  const certificateManager = new OPCUACertificateManager({
    rootFolder: dir,
    automaticallyAcceptUnknownCertificate: false,
    keySize: 2048,
  });
  await certificateManager.initialize();
  const applicationUri = `urn:kerf:${instance}`;
  const certificateFile = path.join(certificateManager.rootDir, "own/certs/client_certificate.pem");
  const privateKeyFile = path.join(certificateManager.rootDir, "own/private/private_key.pem");
  if (!existsSync(certificateFile)) {
    // node-opcua would make one with its vendor's subject and the host name; ours names the instance.
    await certificateManager.createSelfSignedCertificate({
      outputFile: certificateFile,
      subject: `/CN=kerf ${instance}/O=Kerf`,
      applicationUri,
      dns: ["localhost"],
      startDate: new Date(Date.now() - 60_000),
      validity: 365 * 2,
    });
    logger.info({ certificateFile, applicationUri }, "created the OPC UA application instance certificate");
  }
  const certificateDer = new X509Certificate(await readFile(certificateFile)).raw;
  return { certificateManager, applicationUri, certificateFile, privateKeyFile, certificateDer };
}

/**
 * A connect attempt that was refused while the operator trusted the certificate can write its
 * copy into rejected/ again after the move, and node-opcua refuses a certificate that is in both
 * folders. The operator's decision wins: re-trust any rejected certificate that is also trusted.
 */
export async function reconcileTrust(certificateManager: OPCUACertificateManager): Promise<void> {
  const certificates = async (dir: string) => {
    const out: { file: string; fingerprint: string; der: Buffer }[] = [];
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      try {
        const cert = new X509Certificate(await readFile(path.join(dir, name)));
        out.push({ file: path.join(dir, name), fingerprint: cert.fingerprint, der: cert.raw });
      } catch {
        // not a certificate file
      }
    }
    return out;
  };
  const rejected = await certificates(certificateManager.rejectedFolder);
  if (rejected.length === 0) return;
  const trusted = new Set((await certificates(certificateManager.trustedFolder)).map((c) => c.fingerprint));
  for (const r of rejected) {
    if (!trusted.has(r.fingerprint)) continue;
    await certificateManager.trustCertificate(r.der);
    await unlink(r.file).catch(() => undefined);
  }
}
