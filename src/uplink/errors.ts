/**
 * The one place that turns undici and TLS errors into KerfErrors with messages an operator
 * can act on. Callers match on the code: UPLINK_PIN_MISMATCH, UPLINK_NO_CLIENT_CERT,
 * UPLINK_TLS, UPLINK_NETWORK, or for the proxy UPLINK_PROXY, UPLINK_PROXY_REFUSED and
 * UPLINK_PROXY_AUTH.
 */
import { subscribe } from "node:diagnostics_channel";
import type { EventEmitter } from "node:events";
import type { TLSSocket } from "node:tls";
import { KerfError, type KerfErrorCode } from "../errors.ts";
import type { ProxySettings } from "./proxy.ts";

// A cloud that refuses our client certificate often just closes the connection after the
// handshake, without a TLS alert (Node's TLS server does, after TLS 1.3 has finished the
// client's side of the handshake), so the client sees "other side closed" on its first request.
// A cloud that accepted the certificate and then reset the connection (a restart, a proxy, a
// load balancer) looks the same at that point, and that is a network error to retry quietly,
// not an alarm about our identity. What tells them apart, per socket, through undici's
// diagnostics channels:
// - the server asked for a client certificate in the handshake: only then can it refuse ours
//   (on the client, the shared signature algorithms are set only by a CertificateRequest);
// - after a TLS 1.3 handshake, a server that accepted our certificate sends its session
//   tickets; one that refuses it closes without sending anything (TLS 1.2 has no such signal);
// - the connection has carried a response: then it was accepted long ago.
interface SocketFacts {
  certificateRequested: boolean;
  /** The server sent something after the handshake: a session ticket or a response. */
  serverSpoke: boolean;
}
const facts = new WeakMap<object, SocketFacts>();
const requestSocket = new WeakMap<object, object>();
const refusalErrors = new WeakSet<object>();

subscribe("undici:client:connected", (msg) => {
  const socket = (msg as { socket: Partial<TLSSocket> & EventEmitter }).socket;
  if (typeof socket.getSharedSigalgs !== "function" || typeof socket.getProtocol !== "function") return;
  const f: SocketFacts = { certificateRequested: socket.getSharedSigalgs().length > 0, serverSpoke: false };
  facts.set(socket, f);
  if (f.certificateRequested && socket.getProtocol() === "TLSv1.3") socket.once("session", () => (f.serverSpoke = true));
});
subscribe("undici:client:sendHeaders", (msg) => {
  const { request, socket } = msg as { request: object; socket: object };
  requestSocket.set(request, socket);
});
subscribe("undici:request:headers", (msg) => {
  const socket = requestSocket.get((msg as { request: object }).request);
  const f = socket && facts.get(socket);
  if (f) f.serverSpoke = true;
});
subscribe("undici:request:error", (msg) => {
  const { request, error } = msg as { request: object; error: unknown };
  const socket = requestSocket.get(request);
  const f = socket && facts.get(socket);
  if (f?.certificateRequested && !f.serverSpoke && typeof error === "object" && error !== null) refusalErrors.add(error);
});

const clientCertAlert = /ALERT_(CERTIFICATE_REQUIRED|BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_EXPIRED|CERTIFICATE_UNKNOWN|CERTIFICATE_REVOKED|UNSUPPORTED_CERTIFICATE|ACCESS_DENIED)$/;
const closedCodes = new Set(["UND_ERR_SOCKET", "ECONNRESET", "EPIPE"]);
const serverCertCodes = new Set([
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_SIGNATURE_FAILURE",
  "CERT_REVOKED",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

/** Maps any error from a request to the cloud to a KerfError naming the host and what to check. */
export function toUplinkError(err: unknown, host: string): KerfError {
  const found = findKerfError(err);
  if (found) return found;
  const e = (err ?? {}) as { code?: unknown; message?: string; name?: string };
  // DOMExceptions (AbortSignal timeouts) carry a numeric legacy code; their name says more.
  const code = typeof e.code === "string" ? e.code : (e.name ?? "");
  const message = e.message ?? String(err);
  const make = (kerfCode: KerfErrorCode, text: string) => new KerfError(kerfCode, text, { cause: err, details: [`${code}: ${message}`.trim()], context: { host } });

  if (clientCertAlert.test(code)) {
    return make("UPLINK_NO_CLIENT_CERT", `the cloud at '${host}' refused our client certificate (TLS alert ${code}): check that the instance certificate is issued by a CA the cloud trusts and is not expired`);
  }
  if (closedCodes.has(code) && typeof err === "object" && err !== null && refusalErrors.has(err)) {
    return make("UPLINK_NO_CLIENT_CERT", `the cloud at '${host}' refused our client certificate: it asked for one in the TLS handshake, then closed the new connection without sending anything (${code} ${message}); check that the instance certificate is issued by a CA the cloud trusts and is not expired`);
  }
  if (serverCertCodes.has(code)) {
    return make("UPLINK_TLS", `the cloud's certificate at '${host}' was not accepted: ${code} (${message}); check cloud.caFile and the cloud's chain`);
  }
  if (code.includes("ALERT_HANDSHAKE_FAILURE") || code.includes("ALERT_PROTOCOL_VERSION")) {
    return make("UPLINK_TLS", `the TLS handshake with '${host}' failed (${code}): no common TLS version (we require TLS 1.2 or later) or cipher, or the cloud requires a client certificate`);
  }
  if (code.startsWith("ERR_SSL_") || code.startsWith("ERR_TLS_")) {
    return make("UPLINK_TLS", `TLS with '${host}' failed: ${code} (${message})`);
  }
  if (code === "TimeoutError" || code === "UND_ERR_HEADERS_TIMEOUT" || code === "UND_ERR_BODY_TIMEOUT") {
    return make("UPLINK_NETWORK", `the cloud at '${host}' did not answer in time (${code}); the request will be retried under the same idempotency key`);
  }
  return make("UPLINK_NETWORK", `cannot reach the cloud at '${host}': ${code ? `${code} ` : ""}${message}`);
}

/**
 * A CONNECT that did not open a tunnel to `target` (host:port): the proxy could not be reached,
 * or answered with `status`. The message names the proxy, never its credentials.
 */
export function proxyError(proxy: ProxySettings, target: string, outcome: { status: number } | { error: unknown }): KerfError {
  const where = proxy.source === "config" ? "cloud.proxy.url" : "HTTPS_PROXY";
  const context = { host: target.replace(/:\d+$/, ""), proxy: proxy.url };
  if ("error" in outcome) {
    const e = (outcome.error ?? {}) as { code?: unknown; message?: string };
    const code = typeof e.code === "string" ? e.code : "";
    const message = e.message ?? String(outcome.error);
    return new KerfError("UPLINK_PROXY", `cannot reach the proxy ${proxy.url} (${code ? `${code} ` : ""}${message}): check ${where} and that the proxy runs and is reachable from here`, {
      cause: outcome.error,
      details: [`${code}: ${message}`.trim()],
      context,
    });
  }
  const { status } = outcome;
  if (status === 407) {
    const fix = !proxy.username
      ? proxy.source === "config"
        ? "no credentials are configured: set cloud.proxy.usernameFile and cloud.proxy.passwordFile"
        : "no credentials are configured: set cloud.proxy with usernameFile and passwordFile"
      : proxy.source === "config"
        ? "it refused the configured ones: check the files cloud.proxy.usernameFile and cloud.proxy.passwordFile"
        : "it refused the ones in HTTPS_PROXY: check them";
    return new KerfError("UPLINK_PROXY_AUTH", `the proxy ${proxy.url} demands authentication for the tunnel to ${target} (HTTP 407) and ${fix}; data stays buffered meanwhile`, { context });
  }
  if (status >= 400 && status < 500) {
    return new KerfError("UPLINK_PROXY_REFUSED", `the proxy ${proxy.url} refused the tunnel to ${target} (HTTP ${status}): its policy must allow CONNECT to ${target}; data stays buffered meanwhile`, { context });
  }
  return new KerfError("UPLINK_PROXY", `the proxy ${proxy.url} did not open the tunnel to ${target} (HTTP ${status}): check that the proxy can reach the cloud`, { context });
}

function findKerfError(err: unknown): KerfError | undefined {
  for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof KerfError) return e;
  }
  return undefined;
}
