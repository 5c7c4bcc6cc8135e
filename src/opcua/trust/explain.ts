import path from "node:path";
import { isKerfError, type KerfErrorCode } from "../../errors.ts";
import { certificateInfo, certificateNamesHost, formatValidity, hostOf, validityProblem } from "./cert-checks.ts";
import { describeConnectError, firstLine } from "../session/connect-errors.ts";
import type { EndpointSpec } from "../types.ts";
import type { ClientPki } from "./pki.ts";
import { fetchServerCertificate } from "./probe.ts";
import { keepRejected, readTrustStore, stateDirOf } from "./store.ts";
import { readTofu } from "./tofu.ts";

// Explaining a refused server

/**
 * The operator's sentence for a server whose certificate the connector refused: which server,
 * which certificate (SHA-1 thumbprint, subject, applicationUri, validity), why, and the exact
 * command that fixes it, e.g. `kerf trust accept <thumbprint> --state-dir <dir>`. Undefined
 * when the certificate is not what failed (node-opcua finds it good) or cannot be found.
 *
 * It asks the server for its certificate (GetEndpoints on a None channel); when the server does
 * not answer, it falls back to the newest certificate in rejected/ that names the endpoint's host.
 */
export async function describeUntrustedServer(pki: ClientPki, spec: EndpointSpec, stateDir?: string): Promise<string | undefined> {
  const root = pki.certificateManager.rootDir;
  const dir = stateDir ?? stateDirOf(root);
  const where = `${spec.machine} (${spec.endpointUrl})`;
  let chain: Buffer | undefined;
  let note = "";
  try {
    chain = (await fetchServerCertificate(spec, pki))?.der;
  } catch {
    // unreachable just now: what it presented last time is in rejected/
  }
  if (!chain) {
    const host = hostOf(spec.endpointUrl);
    const store = await readTrustStore(root);
    const guess = store.certificates
      .filter((c) => c.store === "rejected" && host !== undefined && certificateNamesHost(c.info, host))
      .sort((a, b) => b.mtimeMs - a.mtimeMs)[0];
    if (!guess) return undefined;
    chain = Buffer.concat(guess.chain);
    note = ` (the server did not answer GetEndpoints; this is the newest certificate in rejected/ that names ${host})`;
  }
  const info = certificateInfo(chain, "the server certificate");
  const status = String(await pki.certificateManager.verifyCertificate(chain, { acceptCertificateWithValidIssuerChain: true }));
  const cert = `thumbprint ${info.thumbprint}, subject "${info.subject}"${info.applicationUri ? `, applicationUri ${info.applicationUri}` : ""}, valid ${formatValidity(info)}${note}`;
  const stateArg = `--state-dir ${shellQuote(dir)}`;
  switch (status) {
    case "Good":
      return undefined;
    case "BadCertificateUntrusted": {
      if ((await keepRejected(pki.certificateManager, chain, info.thumbprint)) === "trusted") return undefined;
      const tofu = (await readTofu(root))[spec.endpointUrl];
      const changed = tofu && tofu.thumbprint !== info.thumbprint ? ` It is NOT the certificate trusted on first use for this endpoint on ${tofu.at} (${tofu.thumbprint}): make sure the machine's certificate really changed before you trust it.` : "";
      const dates = validityProblem(info);
      const datesNote = dates ? ` Note: ${dates}, so it is refused even once trusted; the machine needs a new certificate.` : "";
      return `${where}: the server's certificate is not trusted (${cert}); it is kept in ${path.join(root, "rejected")}.${changed}${datesNote} If this is the machine's certificate (compare the thumbprint with the one the machine shows), trust it with: kerf trust accept ${info.thumbprint} ${stateArg}`;
    }
    case "BadCertificateTimeInvalid":
    case "BadCertificateIssuerTimeInvalid":
      return `${where}: the server's certificate is trusted but not valid now (${cert}): ${validityProblem(info) ?? "its issuer's certificate is outside its validity"}; the machine needs a new certificate (or check this computer's clock)`;
    case "BadCertificateRevoked":
    case "BadCertificateIssuerRevoked":
      return `${where}: the server's certificate has been revoked by its CA's CRL (${cert}, issued by "${info.issuer}"); the machine needs a new certificate`;
    case "BadCertificateRevocationUnknown":
    case "BadCertificateIssuerRevocationUnknown":
      return `${where}: the server's certificate is issued by "${info.issuer}", and the trust store has no CRL for that CA, so revocation cannot be checked (${cert}); add the CA's CRL with: kerf trust add-crl <crl-file> ${stateArg}`;
    case "BadCertificateChainIncomplete":
      return `${where}: the server's certificate is issued by "${info.issuer}", which is not in the trust store (${cert}); add that CA with: kerf trust add-issuer <ca-certificate-file> ${stateArg} (and its CRL with kerf trust add-crl)`;
    default:
      return `${where}: the server's certificate was refused: ${status} (${cert})`;
  }
}

const CERTIFICATE_FAILURE = /BadCertificate|BadSecurityChecksFailed|Certificate verification failed/i;

/** node-opcua says a connect failed on certificates only in its message's status name. */
export function isCertificateFailure(err: unknown): boolean {
  return CERTIFICATE_FAILURE.test(err instanceof Error ? err.message : String(err));
}

/** The code of a failed connect attempt: Kerf's own, or what node-opcua's failure amounts to. */
export function connectErrorCode(err: unknown): KerfErrorCode {
  if (isKerfError(err)) return err.code;
  return isCertificateFailure(err) ? "OPCUA_UNTRUSTED_CERT" : "OPCUA_CONNECT";
}

/**
 * describeConnectError, plus the certificate explanation above when the failure is about
 * certificates. This is what the session calls when a connect attempt fails.
 */
export async function describeConnectFailure(err: unknown, spec: EndpointSpec, pki: ClientPki, stateDir?: string): Promise<string> {
  const message = err instanceof Error ? err.message : String(err);
  if (!isCertificateFailure(err)) return describeConnectError(err, spec);
  const description = await describeUntrustedServer(pki, spec, stateDir).catch(() => undefined);
  if (description) return describeConnectError(err, spec, description);
  if (/BadSecurityChecksFailed|BadCertificateUntrusted/i.test(message) && !/verification failed/i.test(message)) {
    // Our side trusts the server: then it is the server that refused our certificate.
    const own = certificateInfo(pki.certificateDer, "the connector certificate");
    return describeConnectError(
      err,
      spec,
      `${spec.machine} (${spec.endpointUrl}): the server refused the connector's certificate (${firstLine(message)}); trust it on the machine: thumbprint ${own.thumbprint}, subject "${own.subject}", file ${pki.certificateFile}`,
    );
  }
  return describeConnectError(err, spec);
}

function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}
