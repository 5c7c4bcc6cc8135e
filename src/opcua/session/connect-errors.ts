import { isKerfError, KerfError, type KerfErrorContext } from "../../errors.ts";
import type { EndpointSpec } from "../types.ts";

/**
 * node-opcua reports most connect failures as plain Errors whose text carries the
 * OPC UA status; this turns the common ones into a sentence an operator can act on.
 *
 * `certificateDescription` is a sentence already written for a certificate failure (by
 * describeUntrustedServer in ../trust/explain.ts, which has to ask the server and read the trust store, so
 * it is async and cannot run here); when given, it is the answer.
 */
export function describeConnectError(err: unknown, spec: EndpointSpec, certificateDescription?: string): string {
  if (certificateDescription) return certificateDescription;
  const message = err instanceof Error ? err.message : String(err);
  const where = `${spec.machine} (${spec.endpointUrl})`;
  // Our own refusals already name the machine and say what to do.
  if (isKerfError(err, "OPCUA_SECURITY") && err.context.machine === spec.machine && err.context.endpoint === spec.endpointUrl) return firstLine(message);
  if (isKerfError(err, "OPCUA_OWN_CERT_EXPIRED")) return message;
  if (/BadCertificateTimeInvalid|BadCertificateIssuerTimeInvalid/i.test(message)) {
    return `${where}: the server's certificate is outside its validity period (${firstLine(message)}); the machine needs a new certificate, or this computer's clock is wrong`;
  }
  if (/BadCertificateRevoked|BadCertificateIssuerRevoked/i.test(message)) {
    return `${where}: the server's certificate has been revoked by its CA (${firstLine(message)}); the machine needs a new certificate`;
  }
  if (/BadCertificateRevocationUnknown|BadCertificateIssuerRevocationUnknown/i.test(message)) {
    return `${where}: the server's certificate is issued by a CA for which the trust store has no CRL (${firstLine(message)}); add the CA's CRL with kerf trust add-crl`;
  }
  if (/BadCertificateChainIncomplete/i.test(message)) {
    return `${where}: the CA that issued the server's certificate is not in the trust store (${firstLine(message)}); add it with kerf trust add-issuer`;
  }
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

/** Which machine and endpoint an error is about. */
export function endpointContext(spec: Pick<EndpointSpec, "machine" | "endpointUrl">): KerfErrorContext {
  return { machine: spec.machine, endpoint: spec.endpointUrl };
}

/** Kerf's own refusal to use an endpoint, in the words describeConnectError passes on. */
export function securityRefusal(spec: Pick<EndpointSpec, "machine" | "endpointUrl">, refusal: string): KerfError {
  return new KerfError("OPCUA_SECURITY", `${spec.machine} (${spec.endpointUrl}): ${refusal}`, { context: endpointContext(spec) });
}

/** The first line of a message, at most 300 characters: node-opcua's errors carry a stack-like tail. */
export function firstLine(text: string): string {
  return text.split("\n", 1)[0]!.slice(0, 300);
}
