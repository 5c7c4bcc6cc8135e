import { MessageSecurityMode, OPCUAClient, type EndpointDescription } from "node-opcua-client";
import { withTimeout } from "../../timeout.ts";
import { clientTransportLimits } from "../session/limits.ts";
import { modeName, policyName } from "../session/security.ts";
import type { EndpointSpec } from "../types.ts";
import type { ClientPki } from "./pki.ts";

// The server's certificate, as it presents it on an unsecured discovery channel

export interface PresentedCertificate {
  /** The server certificate as sent (a leaf, or a chain leaf first). */
  der: Buffer;
  /** The applicationUri the server announces for itself. */
  applicationUri?: string;
}

/**
 * GetEndpoints over a None channel: every server answers it without trust on either side, and
 * the answer carries the certificate the secured endpoints use. Prefers the endpoint with the
 * configured mode and policy. Nothing is trusted here; this is only what the server says.
 */
export async function fetchServerCertificate(spec: Pick<EndpointSpec, "endpointUrl" | "securityMode" | "securityPolicy" | "connectTimeoutMs">, pki: Pick<ClientPki, "certificateManager" | "certificateFile" | "privateKeyFile" | "applicationUri">): Promise<PresentedCertificate | undefined> {
  const endpoints = await getEndpoints(spec.endpointUrl, pki, spec.connectTimeoutMs);
  const withCert = endpoints.filter((e) => e.serverCertificate && e.serverCertificate.length > 0);
  const chosen =
    withCert.find((e) => modeName(e.securityMode) === spec.securityMode && policyName(e.securityPolicyUri) === spec.securityPolicy) ??
    withCert.find((e) => e.securityMode !== MessageSecurityMode.None) ??
    withCert[0];
  if (!chosen) return undefined;
  return { der: chosen.serverCertificate, applicationUri: chosen.server?.applicationUri ?? undefined };
}

/** The endpoint descriptions a server returns to GetEndpoints, fetched over a None channel. */
export async function getEndpoints(endpointUrl: string, pki: Pick<ClientPki, "certificateManager" | "certificateFile" | "privateKeyFile" | "applicationUri">, timeoutMs: number): Promise<EndpointDescription[]> {
  const client = OPCUAClient.create({
    // a server's answer is bounded here as on the connector's own channel
    ...clientTransportLimits(),
    applicationName: "Kerf",
    applicationUri: pki.applicationUri,
    endpointMustExist: false,
    connectionStrategy: { maxRetry: 0 },
    clientCertificateManager: pki.certificateManager,
    certificateFile: pki.certificateFile,
    privateKeyFile: pki.privateKeyFile,
    transportTimeout: timeoutMs,
  });
  try {
    await withTimeout(client.connect(endpointUrl), timeoutMs, `connecting to ${endpointUrl}`, { endpoint: endpointUrl });
    return await withTimeout(client.getEndpoints(), timeoutMs, `GetEndpoints from ${endpointUrl}`, { endpoint: endpointUrl });
  } finally {
    await withTimeout(client.disconnect(), 2_000, "disconnect").catch(() => undefined);
  }
}
