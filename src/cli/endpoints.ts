import { X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { OPCUACertificateManager } from "node-opcua-certificate-manager";
import { MessageSecurityMode, UserTokenType, type EndpointDescription } from "node-opcua-client";
import { KerfError } from "../errors.ts";
import { createLogger, silentLogger } from "../log.ts";
import { routeOpcuaLogging } from "../opcua/logging.ts";
import { certificateInfo, formatValidity, type CertificateInfo } from "../opcua/trust/cert-checks.ts";
import { openClientPki, type ClientPki } from "../opcua/trust/pki.ts";
import { DEPRECATED, modeName, policyName } from "../opcua/session/security.ts";
import { getEndpoints } from "../opcua/trust/probe.ts";
import { keepRejected } from "../opcua/trust/store.ts";
import { intOption, noPositionals, parseCli, UsageError } from "./args.ts";
import { connectorCertificateFile, ensureConnectorPki } from "./connector-pki.ts";
import { configOption } from "./state-dir.ts";

export const usage = `usage: kerf endpoints URL [--state-dir DIR [--config FILE]] [--timeout MS] [--json]

Lists the endpoints an OPC UA server offers (GetEndpoints on an unsecured discovery channel):
security mode, policy, user token types with their policies, and the server certificate's
SHA-1 thumbprint, subject and applicationUri. With --state-dir (or KERF_STATE_DIR) it also says
whether the connector's trust store there trusts that certificate; one it does not trust is
kept in rejected/, as a connection attempt would, ready for kerf trust accept.

  --state-dir DIR   the connector's state directory; its PKI (<DIR>/pki) is created as kerf run
                    would create it when it is missing
  --config FILE     the connector config, read for its instance id when the PKI is created;
                    default $KERF_CONFIG or /etc/kerf/kerf.yaml, as for kerf run
  --timeout MS      default 10000
  --json            the endpoints as JSON
`;

/** `kerf endpoints URL`: what a server offers, for choosing mode, policy and user token. */
export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCli(
    argv,
    { "state-dir": { type: "string" }, config: { type: "string" }, timeout: { type: "string" }, json: { type: "boolean" } },
    "endpoints",
    usage,
  );
  const url = endpointUrlArg(positionals, "endpoints", usage);
  const timeoutMs = intOption(values.timeout, "timeout", 10_000);
  const stateDir = values["state-dir"] ?? (process.env.KERF_STATE_DIR || undefined);
  // stdout carries the answer: node-opcua's own complaints go to stderr.
  routeOpcuaLogging(createLogger({ level: process.env.KERF_LOG_LEVEL ?? "warn", destination: 2 }));
  const pki = await openToolPki(stateDir === undefined ? undefined : path.resolve(stateDir), { required: false, configFile: configOption(values.config) });
  try {
    let endpoints: EndpointDescription[];
    try {
      endpoints = await getEndpoints(url, pki, timeoutMs);
    } catch (err) {
      throw new KerfError("OPCUA_CONNECT", `cannot get the endpoints of ${url}: ${firstLine((err as Error).message)}`);
    }
    const trust = pki.persistent && stateDir !== undefined ? await trustVerdicts(pki, endpoints, path.resolve(stateDir)) : undefined;
    const rows = endpoints.map((e) => describeEndpoint(e, trust));
    process.stdout.write(values.json ? JSON.stringify({ url, endpoints: rows }, null, 2) + "\n" : endpointsText(url, endpoints[0], rows));
    return 0;
  } finally {
    await pki.dispose();
  }
}

export interface EndpointRow {
  endpointUrl: string;
  securityMode: string;
  securityPolicy: string;
  deprecated: boolean;
  securityLevel: number;
  userTokens: { type: string; policy: string; passwordInClear: boolean }[];
  certificate: { thumbprint: string; subject: string; applicationUri: string | null; notBefore: string; notAfter: string; trust?: string } | null;
  applicationUri: string | null;
}

function describeEndpoint(e: EndpointDescription, trust: ((thumbprint: string) => string) | undefined): EndpointRow {
  const mode = modeName(e.securityMode) ?? String(e.securityMode);
  const policy = policyName(e.securityPolicyUri) ?? e.securityPolicyUri ?? "?";
  let cert: CertificateInfo | undefined;
  try {
    cert = e.serverCertificate?.length ? certificateInfo(e.serverCertificate) : undefined;
  } catch {
    cert = undefined;
  }
  return {
    endpointUrl: e.endpointUrl ?? "",
    securityMode: mode,
    securityPolicy: policy,
    deprecated: DEPRECATED.has(policy as never),
    securityLevel: e.securityLevel,
    userTokens: (e.userIdentityTokens ?? []).map((t) => {
      // An empty token policy means "the channel's policy" (OPC UA Part 4, 7.37).
      const tokenPolicy = t.securityPolicyUri ? (policyName(t.securityPolicyUri) ?? t.securityPolicyUri) : policy;
      return {
        type: UserTokenType[t.tokenType] ?? String(t.tokenType),
        policy: tokenPolicy,
        passwordInClear: t.tokenType === UserTokenType.UserName && e.securityMode !== MessageSecurityMode.SignAndEncrypt && tokenPolicy === "None",
      };
    }),
    certificate: cert
      ? {
          thumbprint: cert.thumbprint,
          subject: cert.subject,
          applicationUri: cert.applicationUri ?? null,
          notBefore: cert.notBefore.toISOString(),
          notAfter: cert.notAfter.toISOString(),
          ...(trust ? { trust: trust(cert.thumbprint) } : {}),
        }
      : null,
    applicationUri: e.server?.applicationUri ?? null,
  };
}

function endpointsText(url: string, first: EndpointDescription | undefined, rows: EndpointRow[]): string {
  const lines: string[] = [];
  const name = first?.server?.applicationName?.text ?? "?";
  lines.push(`${url}: ${rows.length} endpoint${rows.length === 1 ? "" : "s"} of "${name}" (applicationUri ${first?.server?.applicationUri ?? "?"})`, "");
  const certs = new Map<string, NonNullable<EndpointRow["certificate"]>>();
  for (const r of rows) if (r.certificate) certs.set(r.certificate.thumbprint, r.certificate);
  const several = certs.size > 1;
  const header = ["MODE", "POLICY", ...(several ? ["CERTIFICATE"] : []), "USER TOKENS (token policy)"];
  const table = rows.map((r) => [
    r.securityMode,
    r.securityPolicy + (r.deprecated ? " *" : ""),
    ...(several ? [r.certificate?.thumbprint.slice(0, 12) ?? "-"] : []),
    r.userTokens.map((t) => `${t.type}${t.type === "Anonymous" ? "" : ` (${t.policy}${t.passwordInClear ? ": password in clear, Kerf refuses" : ""})`}`).join(", ") || "none",
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
  for (const row of [header, ...table]) lines.push(row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  "));
  if (rows.some((r) => r.deprecated)) lines.push("", "* deprecated policy: Kerf uses it only with allowDeprecated: true");
  lines.push("");
  for (const c of certs.values()) {
    lines.push(`server certificate ${c.thumbprint} (SHA-1)`);
    lines.push(`  subject         ${c.subject}`);
    lines.push(`  applicationUri  ${c.applicationUri ?? "(none)"}`);
    lines.push(`  valid           ${formatValidity({ notBefore: new Date(c.notBefore), notAfter: new Date(c.notAfter) } as CertificateInfo)}`);
    if (c.trust) lines.push(`  trust store     ${c.trust}`);
  }
  if (certs.size === 0) lines.push("the server sent no certificate");
  return lines.join("\n") + "\n";
}

/**
 * The connector's verdict on each server certificate. One it does not trust goes to rejected/,
 * as the connector's own first attempt would put it, so that kerf trust accept can take it.
 */
async function trustVerdicts(pki: ToolPki, endpoints: EndpointDescription[], stateDir: string): Promise<(thumbprint: string) => string> {
  const verdicts = new Map<string, string>();
  for (const e of endpoints) {
    if (!e.serverCertificate?.length) continue;
    const info = certificateInfo(e.serverCertificate);
    if (verdicts.has(info.thumbprint)) continue;
    const status = String(await pki.certificateManager.verifyCertificate(e.serverCertificate, { acceptCertificateWithValidIssuerChain: true }));
    if (status === "Good") verdicts.set(info.thumbprint, "trusted");
    else if (status === "BadCertificateUntrusted") {
      const kept = await keepRejected(pki.certificateManager, e.serverCertificate, info.thumbprint);
      verdicts.set(info.thumbprint, kept === "trusted" ? "trusted" : `not trusted; kept in rejected/ (kerf trust accept ${info.thumbprint} --state-dir ${stateDir} trusts it)`);
    } else verdicts.set(info.thumbprint, `refused: ${status}`);
  }
  return (thumbprint) => verdicts.get(thumbprint) ?? "?";
}

// ---------------------------------------------------------------------------------------------
// Shared with `kerf browse`

export interface ToolPki extends ClientPki {
  /** The connector's own PKI (true) or a throwaway one made for this command. */
  persistent: boolean;
  dispose(): Promise<void>;
}

/**
 * The connector's PKI in `<stateDir>/pki`, so that a commissioning command is trusted, and trusts,
 * exactly as the connector does; created when missing (see ensureConnectorPki). Without a state
 * dir (and not `required`), a throwaway PKI for unsecured discovery.
 */
export async function openToolPki(stateDir: string | undefined, options: { required: boolean; configFile: string }): Promise<ToolPki> {
  if (stateDir !== undefined) {
    await ensureConnectorPki(stateDir, options.configFile);
    const root = path.join(stateDir, "pki");
    const certificateFile = connectorCertificateFile(stateDir);
    const certificateDer = new X509Certificate(await readFile(certificateFile)).raw;
    const applicationUri = certificateInfo(certificateDer).applicationUri ?? "urn:kerf:tool";
    const certificateManager = new OPCUACertificateManager({ rootFolder: root, automaticallyAcceptUnknownCertificate: false, disableFileWatchers: true, keySize: 2048 });
    await certificateManager.initialize();
    return {
      certificateManager,
      applicationUri,
      certificateFile,
      privateKeyFile: path.join(root, "own/private/private_key.pem"),
      certificateDer,
      persistent: true,
      dispose: () => certificateManager.dispose(),
    };
  }
  if (options.required) {
    throw new UsageError("a secured connection needs the connector's state directory: give --state-dir DIR (or KERF_STATE_DIR); the server must trust the connector's certificate, which lives in <state-dir>/pki");
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), "kerf-tool-pki-"));
  const pki = await openClientPki({ dir, instance: "tool", logger: silentLogger() });
  return {
    ...pki,
    persistent: false,
    dispose: async () => {
      await pki.certificateManager.dispose();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export function endpointUrlArg(positionals: string[], command: string, usage: string): string {
  const [url, ...extra] = positionals;
  if (!url) throw new UsageError(`${command}: missing the server URL (opc.tcp://host:port)`, usage);
  noPositionals(extra, command, usage);
  if (!/^opc\.tcp:\/\/[^\s/?#]+/.test(url) || !URL.canParse(url)) throw new UsageError(`${command}: '${url}' is not an OPC UA endpoint URL (expected opc.tcp://host:port[/path])`, usage);
  return url;
}

function firstLine(text: string): string {
  return text.split("\n", 1)[0]!.slice(0, 300);
}
