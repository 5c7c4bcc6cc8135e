/**
 * Latencies in whole milliseconds, counted in fixed buckets: millions of values a run cost a
 * few hundred KB and no sort, on the same cores as what the bench measures.
 */
export class LatencyHistogram {
  /** Bucket i counts latencies of i ms; the last one counts everything at or above it. */
  readonly #counts: Uint32Array;
  #n = 0;
  #max = 0;

  constructor(maxMs = 120_000) {
    this.#counts = new Uint32Array(maxMs + 1);
  }

  get count(): number {
    return this.#n;
  }

  add(ms: number): void {
    const i = Math.max(0, Math.min(this.#counts.length - 1, Math.round(ms)));
    this.#counts[i]!++;
    this.#n++;
    if (ms > this.#max) this.#max = ms;
  }

  reset(): void {
    this.#counts.fill(0);
    this.#n = 0;
    this.#max = 0;
  }

  /** The p-th percentile in ms; NaN when empty. */
  percentile(p: number): number {
    if (this.#n === 0) return NaN;
    const rank = Math.min(this.#n - 1, Math.floor((p / 100) * this.#n));
    let seen = 0;
    for (let i = 0; i < this.#counts.length; i++) {
      seen += this.#counts[i]!;
      if (seen > rank) return i;
    }
    return this.#counts.length - 1;
  }

  summary(): { p50Ms: number; p99Ms: number; maxMs: number } {
    return { p50Ms: this.percentile(50), p99Ms: this.percentile(99), maxMs: Math.round(this.#max) };
  }
}
