import { X509Certificate } from "node:crypto";
import { existsSync } from "node:fs";
import { readdir, readFile, unlink } from "node:fs/promises";
import path from "node:path";
import { OPCUACertificateManager } from "node-opcua-certificate-manager";
import type { Logger } from "../../log.ts";
import { APPLICATION_CERTIFICATE_DAYS, ApplicationCertificate } from "./app-cert.ts";

export interface ClientPki {
  certificateManager: OPCUACertificateManager;
  applicationUri: string;
  certificateFile: string;
  privateKeyFile: string;
  certificateDer: Buffer;
}

/** The connector's PKI, with the lifecycle of its application certificate (expiry, staged renewal). */
export interface ConnectorPki extends ClientPki {
  /** Shared by all machine sessions: which certificate each connect attempt uses. */
  own: ApplicationCertificate;
  /** The current certificate's DER (it changes when a renewal is promoted). */
  readonly certificateDer: Buffer;
}

/**
 * node-opcua records an untrusted verdict by moving the server's certificate into rejected/ some
 * time after making it (after the other checks of the channel, under the store's lock). An
 * operator's accept (`kerf trust accept`, `trustCertificate`) that landed in between was undone by
 * that move: the certificate went back to rejected/ and the server stayed refused (the
 * intermittent failure of test/opcua/trust.int.test.ts under CPU load). A verdict only needs to
 * record a certificate the store does not hold yet; one that is in trusted/ or rejected/ on disk
 * stays where it is. Operators reject through their own manager (`kerf trust reject`).
 * The simulator uses it too: a machine whose operator trusts the connector's renewed certificate
 * while the connector tries it must not undo that trust either.
 */
export class ConnectorCertificateManager extends OPCUACertificateManager {
  override async rejectCertificate(certificateOrChain: Buffer | Buffer[]): Promise<void> {
    const leaf = Array.isArray(certificateOrChain) ? certificateOrChain[0] : certificateOrChain;
    if (leaf && (await isInStore(this, leaf))) return;
    await super.rejectCertificate(certificateOrChain);
  }
}

/** Whether a certificate with the leaf's fingerprint is in rejected/ or trusted/ on disk. */
async function isInStore(cm: OPCUACertificateManager, leaf: Buffer): Promise<boolean> {
  let fingerprint: string;
  try {
    fingerprint = new X509Certificate(leaf).fingerprint;
  } catch {
    return false;
  }
  // rejected/ first: an accept renames the file from there to trusted/, so read in this order it
  // is seen in one or the other whenever the rename happens (the other order missed it once in
  // 40 runs under load, and the certificate went back to rejected/).
  for (const dir of [cm.rejectedFolder, cm.trustedFolder]) {
    if ((await certificatesIn(dir)).some((c) => c.fingerprint === fingerprint)) return true;
  }
  return false;
}

/**
 * The connector's OPC UA application instance PKI under `<state-dir>/pki`
 * (own, trusted, rejected, issuers, CRLs). Unknown server certificates are
 * refused: node-opcua's default manager would accept them automatically.
 */
export async function openClientPki(options: { dir: string; instance: string; logger: Logger }): Promise<ConnectorPki> {
  const { dir, instance, logger } = options;
  const certificateManager = new ConnectorCertificateManager({
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
      validity: APPLICATION_CERTIFICATE_DAYS,
    });
    logger.info({ certificateFile, applicationUri }, "created the OPC UA application instance certificate");
  }
  const own = new ApplicationCertificate(certificateManager.rootDir, logger);
  return {
    certificateManager,
    applicationUri,
    certificateFile,
    privateKeyFile,
    own,
    get certificateDer() {
      return own.current.der;
    },
  };
}

/**
 * A connect attempt that was refused while the operator trusted the certificate can write its
 * copy into rejected/ again after the move, and node-opcua refuses a certificate that is in both
 * folders. The operator's decision wins: re-trust any rejected certificate that is also trusted.
 */
export async function reconcileTrust(certificateManager: OPCUACertificateManager): Promise<void> {
  const rejected = await certificatesIn(certificateManager.rejectedFolder);
  if (rejected.length === 0) return;
  const trusted = new Set((await certificatesIn(certificateManager.trustedFolder)).map((c) => c.fingerprint));
  for (const r of rejected) {
    if (!trusted.has(r.fingerprint)) continue;
    await certificateManager.trustCertificate(r.der);
    await unlink(r.file).catch(() => undefined);
  }
}

/** The certificate files in a store folder (the first certificate of each). */
async function certificatesIn(dir: string): Promise<{ file: string; fingerprint: string; der: Buffer }[]> {
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
}
