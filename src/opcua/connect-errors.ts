import type { EndpointSpec } from "./types.ts";

/**
 * node-opcua reports most connect failures as plain Errors whose text carries the
 * OPC UA status; this turns the common ones into a sentence an operator can act on.
 */
export function describeConnectError(err: unknown, spec: EndpointSpec): string {
  const message = err instanceof Error ? err.message : String(err);
  const where = `${spec.machine} (${spec.endpointUrl})`;
  if (/BadCertificateUntrusted|certificate.*(untrusted|not trusted)|BadSecurityChecksFailed/i.test(message)) {
    return `${where}: the server refused or was refused on certificate trust (${firstLine(message)}); check that each side trusts the other's certificate (kerf trust list)`;
  }
  if (/BadUserAccessDenied|BadIdentityTokenRejected|BadIdentityTokenInvalid/i.test(message)) {
    return `${where}: user authentication failed: BadUserAccessDenied (check the user name and password or the user certificate)`;
  }
  if (/cannot find (an )?endpoint|endpoint.*(not found|does not exist)|No endpoint found/i.test(message)) {
    return `${where}: the server offers no endpoint with security mode ${spec.securityMode} and policy ${spec.securityPolicy}; Kerf never falls back to a weaker one (kerf endpoints ${spec.endpointUrl} lists what it offers)`;
  }
  if (/ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ETIMEDOUT|timed out|Fail(ed)? to connect/i.test(message)) {
    return `${where}: cannot reach the server (${firstLine(message)})`;
  }
  return `${where}: ${firstLine(message)}`;
}

function firstLine(text: string): string {
  return text.split("\n", 1)[0]!.slice(0, 300);
}
