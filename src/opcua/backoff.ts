/**
 * Capped exponential backoff with full jitter: the delay is uniform in [0, min(max, initial·2^attempt)].
 * Full jitter spreads the reconnects of many connectors that lost the same server at once,
 * so they do not return in lockstep and knock it over again.
 */
export function backoffDelay(attempt: number, options: { initialMs: number; maxMs: number }, random: () => number = Math.random): number {
  const ceiling = Math.min(options.maxMs, options.initialMs * 2 ** Math.min(attempt, 30));
  return random() * ceiling;
}
