import { MessageSecurityMode, OPCUAClient, SecurityPolicy } from "node-opcua-client";
import { makePrivateKeyFromPem } from "node-opcua-crypto";
import { withTimeout } from "../../timeout.ts";
import { isCertificateFailure } from "../trust/explain.ts";
import type { AppCertificate } from "../trust/app-cert.ts";
import type { ConnectorPki } from "../trust/pki.ts";
import type { EndpointSpec, SecurityModeName, SecurityPolicyName } from "../types.ts";
import { clientTransportLimits } from "./limits.ts";

/**
 * node-opcua takes the certificate and key of a client from this provider instead of from files:
 * an attempt uses exactly the pair it chose, even if a promotion renames the files meanwhile.
 */
export function keyPairOf(cert: AppCertificate) {
  const privateKey = makePrivateKeyFromPem(cert.keyPem);
  return { getCertificate: () => cert.der, getCertificateChain: () => [cert.der], getPrivateKey: () => privateKey };
}

/**
 * Whether the server accepts `cert`: a secure channel opened with it beside the live session,
 * then closed, without a session (so no login, nothing a machine could count against an
 * account). OPC UA servers check the client's application certificate when they open a secure
 * channel in Sign or SignAndEncrypt; with mode None they check nothing, so there is nothing to try.
 */
export async function trialChannel(
  spec: EndpointSpec,
  mode: SecurityModeName,
  policy: SecurityPolicyName,
  pki: ConnectorPki,
  cert: AppCertificate,
): Promise<{ result: "accepted" | "refused" | "failed"; reason?: string }> {
  if (mode === "None") return { result: "accepted" };
  const client = OPCUAClient.create({
    ...clientTransportLimits(),
    applicationName: "Kerf",
    applicationUri: pki.applicationUri,
    clientCertificateManager: pki.certificateManager,
    certificateKeyPairProvider: keyPairOf(cert),
    securityMode: MessageSecurityMode[mode],
    securityPolicy: SecurityPolicy[policy],
    endpointMustExist: false,
    connectionStrategy: { maxRetry: 0 },
    transportTimeout: spec.connectTimeoutMs,
  });
  try {
    await withTimeout(client.connect(spec.endpointUrl), spec.connectTimeoutMs, "connect");
    return { result: "accepted" };
  } catch (err) {
    const reason = err instanceof Error ? err.message.split("\n", 1)[0]! : String(err);
    return { result: isCertificateFailure(err) ? "refused" : "failed", reason };
  } finally {
    await withTimeout(client.disconnect(), 2_000, "disconnect").catch(() => undefined);
  }
}
