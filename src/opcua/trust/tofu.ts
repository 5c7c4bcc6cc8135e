/**
 * Trust on first use, for commissioning. The record of which certificate was trusted this way
 * for which endpoint URL is a file beside the store.
 */
import { readFile, unlink, writeFile, rename } from "node:fs/promises";
import path from "node:path";
import type { OPCUACertificateManager } from "node-opcua-certificate-manager";
import type { Logger } from "../../log.ts";
import type { EndpointSpec } from "../types.ts";
import { certificateInfo, checkServerCertificate } from "./cert-checks.ts";
import type { ClientPki } from "./pki.ts";
import { fetchServerCertificate, type PresentedCertificate } from "./probe.ts";
import { ignoreMissing, readTrustStore } from "./store.ts";

const TOFU_FILE = "trust-on-first-use.json";

interface TofuRecord {
  thumbprint: string;
  applicationUri?: string;
  at: string;
}

/**
 * Commissioning only, when the machine's config sets trustOnFirstUse: before connecting, trust
 * the certificate the server presents if nothing was trusted for this endpoint yet. Once a
 * certificate was trusted this way for an endpoint URL, a different one is never trusted
 * automatically (that is what a man in the middle, or a replaced machine, looks like); nor is
 * one whose applicationUri a trusted certificate already carries, or one that fails the checks
 * of checkServerCertificate. Everything it does is logged at WARN.
 */
export async function trustOnFirstUse(pki: ClientPki, spec: EndpointSpec, logger: Logger): Promise<void> {
  if (!spec.trustOnFirstUse || spec.securityMode === "None") return;
  const root = pki.certificateManager.rootDir;
  const log = logger.child({ machine: spec.machine, endpoint: spec.endpointUrl });
  let presented: PresentedCertificate | undefined;
  try {
    presented = await fetchServerCertificate(spec, pki);
  } catch (err) {
    log.debug({ err: (err as Error).message }, "trust on first use: the server did not answer GetEndpoints; connecting as usual");
    return;
  }
  if (!presented) return;
  const info = certificateInfo(presented.der, "the server certificate");
  const store = await readTrustStore(root);
  const trusted = store.certificates.filter((c) => c.store === "trusted");
  if (trusted.some((c) => c.info.thumbprint === info.thumbprint)) return;

  const record = (await readTofu(root))[spec.endpointUrl];
  if (record?.thumbprint === info.thumbprint) {
    log.warn({ thumbprint: info.thumbprint }, `trust on first use: certificate ${info.thumbprint} was trusted on first use on ${record.at} but is no longer trusted (kerf trust reject?); not trusting it again automatically`);
    return;
  }
  if (record) {
    log.warn({ thumbprint: info.thumbprint, trustedOnFirstUse: record.thumbprint }, `trust on first use: the server presents certificate ${info.thumbprint}, not ${record.thumbprint} trusted on first use on ${record.at}; not trusting it automatically`);
    return;
  }
  const sameApp = trusted.find((c) => presented.applicationUri && c.info.applicationUri === presented.applicationUri);
  if (sameApp) {
    log.warn({ thumbprint: info.thumbprint, trusted: sameApp.info.thumbprint }, `trust on first use: a certificate for ${presented.applicationUri} is trusted already (${sameApp.info.thumbprint}); not trusting another one automatically`);
    return;
  }
  const problem = checkServerCertificate(spec, { certificateDer: presented.der, applicationUri: presented.applicationUri });
  if (problem) {
    log.warn({ thumbprint: info.thumbprint }, `trust on first use: not trusting the server certificate: ${problem}`);
    return;
  }
  await cmTrust(pki.certificateManager, presented.der);
  await writeTofu(root, spec.endpointUrl, { thumbprint: info.thumbprint, applicationUri: info.applicationUri, at: new Date().toISOString() });
  log.warn(
    { thumbprint: info.thumbprint, subject: info.subject, applicationUri: info.applicationUri },
    `trust on first use: trusted the server certificate ${info.thumbprint} (${info.subject}) without an operator's check; turn trustOnFirstUse off for this machine once commissioned`,
  );
}

async function cmTrust(cm: OPCUACertificateManager, der: Buffer): Promise<void> {
  await cm.trustCertificate(der);
  const info = certificateInfo(der);
  for (const c of (await readTrustStore(cm.rootDir)).certificates) {
    if (c.store === "rejected" && c.info.thumbprint === info.thumbprint) await unlink(c.file).catch(ignoreMissing);
  }
}

export async function readTofu(root: string): Promise<Record<string, TofuRecord>> {
  try {
    const parsed = JSON.parse(await readFile(path.join(root, TOFU_FILE), "utf8")) as unknown;
    return parsed && typeof parsed === "object" ? Object.assign(Object.create(null) as Record<string, TofuRecord>, parsed) : Object.create(null);
  } catch {
    return Object.create(null) as Record<string, TofuRecord>;
  }
}

/**
 * Several machines commission at once: each read-modify-write of the record file waits for the
 * one before, or one record would overwrite another and its endpoint would later trust a
 * different certificate without a word.
 */
let writes: Promise<unknown> = Promise.resolve();

export function writeTofu(root: string, endpointUrl: string, record: TofuRecord): Promise<void> {
  const write = writes.then(async () => {
    const all = await readTofu(root);
    all[endpointUrl] = record;
    const file = path.join(root, TOFU_FILE);
    await writeFile(`${file}.tmp`, JSON.stringify(all, null, 2) + "\n", { mode: 0o600 });
    await rename(`${file}.tmp`, file);
  });
  writes = write.catch(() => undefined);
  return write;
}
