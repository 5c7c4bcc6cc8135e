import type { EndpointDescription, MessageSecurityMode, OPCUAClient, SecurityPolicy } from "node-opcua-client";
import type { Logger } from "../../log.ts";
import { checkServerCertificate } from "../trust/cert-checks.ts";
import type { EndpointSpec, SecurityPolicyName } from "../types.ts";
import { checkNoDowngrade, checkUserToken } from "./security.ts";

type ConcreteMode = Exclude<EndpointSpec["securityMode"], "best">;

/** node-opcua does not say what a secure channel negotiated except in this private field; it is read here only. */
function negotiated(client: OPCUAClient): { securityMode: MessageSecurityMode; securityPolicy: SecurityPolicy } | null {
  return (client as unknown as { _secureChannel: { securityMode: MessageSecurityMode; securityPolicy: SecurityPolicy } | null })._secureChannel;
}

/**
 * After connect: what the secure channel really negotiated, and the server's description of that
 * endpoint. `refusal` says why it may not be used (a downgrade, a certificate that does not fit the
 * endpoint, no token for the configured user); undefined when it may.
 */
export function checkChannel(
  client: OPCUAClient,
  spec: EndpointSpec,
  mode: ConcreteMode,
  policy: SecurityPolicyName,
  logger?: Logger,
): { endpoint: EndpointDescription | undefined; refusal: string | undefined } {
  const channel = negotiated(client);
  const endpoint = channel ? client.findEndpointForSecurity(channel.securityMode, channel.securityPolicy) : undefined;
  if (!channel || !endpoint) return { endpoint, refusal: "the server does not describe the endpoint of this channel" };
  const refusal = checkNoDowngrade(channel, mode, policy) ?? checkServerCertificate({ ...spec, securityMode: mode }, endpoint, logger) ?? checkUserToken(endpoint, spec.user);
  return { endpoint, refusal };
}
