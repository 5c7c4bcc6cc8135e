/**
 * Capped exponential backoff with full jitter: a uniformly random delay in
 * [0, min(maxDelayMs, initialDelayMs × 2^(attempt-1))). Full jitter, rather than a fixed or
 * "equal jitter" delay, spreads the retries of a whole fleet evenly over the window, so when a
 * cloud or a machine's server comes back after an outage the clients that lost it at the same
 * moment do not return in lockstep and knock it over again (the thundering herd). `attempt`
 * counts from 1. Used by the uplink and by the OPC UA session's reconnects.
 */
export function backoff(attempt: number, options: { initialDelayMs: number; maxDelayMs: number }, random: () => number = Math.random): number {
  const exponent = Math.min(Math.max(attempt, 1) - 1, 30);
  const ceiling = Math.min(options.maxDelayMs, options.initialDelayMs * 2 ** exponent);
  return Math.floor(random() * ceiling);
}
