/**
 * The uplink's retry policy, in one place: what each response or error makes the sender do.
 * docs/protocol.md carries the same table for cloud implementers. How long a retried batch
 * waits, and whether the others wait too, is the pacer's business (pacer.ts): a failed batch
 * waits alone while other requests succeed; only when all fail does the wait pace everything.
 *
 *   200                         success: the batch is acknowledged and deleted from the buffer
 *   network error, timeout      retry with backoff
 *   pin mismatch, TLS failure,  retry with backoff, logged as an error every time: the config or
 *   client certificate refused, the network must be fixed, and the data stays buffered meanwhile
 *   proxy auth (407) or policy
 *   (403) refused
 *   no access token
 *   408, 429, 5xx except 501    retry; Retry-After (seconds or HTTP-date) is honoured, capped,
 *                               for the batch it answered (for all batches once the cloud is down)
 *   401 with a token            one new token and one retry of the request at once (sender.ts); a
 *                               second 401 is handled as below
 *   401 403 404 405 407 415 421 retry, logged as an error: these say the connector is pointed at the
 *                               wrong place or with the wrong credentials, which no batch content
 *                               can fix; rejecting would dead-letter every batch until fixed
 *   413                         split the batch in two and send the halves
 *   other 4xx, 501              reject: the batch is dead-lettered, the queue moves on
 *   other 1xx/2xx/3xx           retry, logged as an error (only 200 acknowledges; a redirect or
 *                               an unexpected success code means a misconfigured URL or proxy)
 */

export interface RetryOptions {
  /** Upper bound of the first backoff delay. */
  initialDelayMs: number;
  /** Upper bound of any backoff delay. */
  maxDelayMs: number;
  /** Upper bound of a delay asked for by Retry-After; a server cannot park the uplink for longer. */
  maxRetryAfterMs?: number;
}

export const defaultRetryOptions: Required<RetryOptions> = { initialDelayMs: 500, maxDelayMs: 30_000, maxRetryAfterMs: 300_000 };

export type Outcome = { status: number; headers: Record<string, string | string[] | undefined> } | { error: unknown };

export type Decision =
  | { action: "success" }
  | { action: "retry"; delayMs?: number; level: "warn" | "error"; reason: string }
  | { action: "split"; reason: string }
  | { action: "reject"; reason: string };

const configurationStatuses = new Set([401, 403, 404, 405, 407, 415, 421]);
const alarmingErrorCodes = new Set(["UPLINK_PIN_MISMATCH", "UPLINK_TLS", "UPLINK_NO_CLIENT_CERT", "UPLINK_PROXY_AUTH", "UPLINK_PROXY_REFUSED", "AUTH_TOKEN"]);

export function classify(outcome: Outcome, options: { maxRetryAfterMs?: number; now?: number } = {}): Decision {
  if ("error" in outcome) {
    const code = (outcome.error as { code?: unknown } | null)?.code;
    const message = (outcome.error as { message?: unknown } | null)?.message ?? String(outcome.error);
    return { action: "retry", level: typeof code === "string" && alarmingErrorCodes.has(code) ? "error" : "warn", reason: `${typeof code === "string" ? `${code}: ` : ""}${String(message)}` };
  }
  const { status } = outcome;
  if (status === 200) return { action: "success" };
  if (status === 408 || status === 429 || (status >= 500 && status <= 599 && status !== 501)) {
    const delayMs = parseRetryAfter(header(outcome.headers, "retry-after"), options.now ?? Date.now(), options.maxRetryAfterMs ?? defaultRetryOptions.maxRetryAfterMs);
    return { action: "retry", level: "warn", reason: `HTTP ${status}`, ...(delayMs === undefined ? {} : { delayMs }) };
  }
  if (status === 413) return { action: "split", reason: "HTTP 413: batch too large for the cloud" };
  if (configurationStatuses.has(status)) return { action: "retry", level: "error", reason: `HTTP ${status}: check cloud.url and the instance's credentials; data stays buffered` };
  if (status === 501 || (status >= 400 && status <= 499)) return { action: "reject", reason: `HTTP ${status}` };
  return { action: "retry", level: "error", reason: `HTTP ${status}: only 200 acknowledges a batch; check cloud.url and any proxy` };
}

/** Retry-After as delay-seconds or an HTTP-date (RFC 9110 §10.2.3), in ms, capped; undefined if absent or unreadable. */
export function parseRetryAfter(value: string | undefined, now: number, capMs: number): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  let ms: number;
  if (/^\d+$/.test(text)) ms = Number(text) * 1000;
  else {
    const date = Date.parse(text);
    if (Number.isNaN(date) || !/[A-Za-z]/.test(text)) return undefined;
    ms = date - now;
  }
  return Math.min(Math.max(ms, 0), capMs);
}

function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const value = headers[name] ?? Object.entries(headers).find(([k]) => k.toLowerCase() === name)?.[1];
  return Array.isArray(value) ? value[0] : value;
}
