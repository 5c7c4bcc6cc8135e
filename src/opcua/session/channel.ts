import type { EndpointDescription, MessageSecurityMode, OPCUAClient, SecurityPolicy } from "node-opcua-client";
import type { Logger } from "../../log.ts";
import { checkServerCertificate } from "../trust/cert-checks.ts";
import type { EndpointSpec, SecurityPolicyName } from "../types.ts";
import { checkNoDowngrade, checkUserToken } from "./security.ts";

type ConcreteMode = Exclude<EndpointSpec["securityMode"], "best">;
/** The part of the connector's trust store that the password check asks. */
type TrustStore = { isCertificateTrusted(certificate: Buffer): Promise<string> };

/** node-opcua does not say what a secure channel negotiated except in this private field; it is read here only. */
function negotiated(client: OPCUAClient): { securityMode: MessageSecurityMode; securityPolicy: SecurityPolicy } | null {
  return (client as unknown as { _secureChannel: { securityMode: MessageSecurityMode; securityPolicy: SecurityPolicy } | null })._secureChannel;
}

/**
 * After connect: what the secure channel really negotiated, and the server's description of that
 * endpoint. `refusal` says why it may not be used (a downgrade, a certificate that does not fit the
 * endpoint, no token for the configured user, a password for an untrusted certificate); undefined
 * when it may. The connector's session and `kerf browse` both pass through here.
 */
export async function checkChannel(
  client: OPCUAClient,
  spec: EndpointSpec,
  mode: ConcreteMode,
  policy: SecurityPolicyName,
  certificateManager: TrustStore,
  logger?: Logger,
): Promise<{ endpoint: EndpointDescription | undefined; refusal: string | undefined }> {
  const channel = negotiated(client);
  const endpoint = channel ? client.findEndpointForSecurity(channel.securityMode, channel.securityPolicy) : undefined;
  if (!channel || !endpoint) return { endpoint, refusal: "the server does not describe the endpoint of this channel" };
  const refusal =
    checkNoDowngrade(channel, mode, policy) ?? checkServerCertificate({ ...spec, securityMode: mode }, endpoint, logger) ?? checkUserToken(endpoint, spec.user) ?? (await checkPasswordTarget(endpoint, spec, mode, certificateManager));
  return { endpoint, refusal };
}

/**
 * Over mode None the secure channel has checked no certificate; a password would be encrypted
 * for whatever certificate the endpoint description carries. Only a trusted one.
 */
async function checkPasswordTarget(endpoint: EndpointDescription, spec: EndpointSpec, mode: ConcreteMode, certificateManager: TrustStore): Promise<string | undefined> {
  if (spec.user.type !== "username" || mode !== "None") return undefined;
  const trust = endpoint.serverCertificate?.length ? await certificateManager.isCertificateTrusted(endpoint.serverCertificate) : "BadCertificateInvalid";
  return trust === "Good" ? undefined : `the password would be encrypted for a server certificate that is not trusted (${trust}); trust the server's certificate first (kerf trust list)`;
}
