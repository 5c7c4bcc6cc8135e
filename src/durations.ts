/**
 * Durations counted in buckets 10 % wide, from 1 ms to about an hour: a percentile is off by
 * at most 10 %, whatever the number of samples, in a fixed 1.3 KB. For the stage times that
 * health reports (how long values wait for their commit, in the queue, in the request).
 */
const GROWTH = 1.1;
const BUCKETS = 160;

export interface DurationSummary {
  count: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export class DurationHistogram {
  readonly #counts = new Float64Array(BUCKETS);
  #n = 0;
  #max = 0;

  add(ms: number): void {
    const i = ms < 1 ? 0 : Math.min(BUCKETS - 1, Math.floor(Math.log(ms) / Math.log(GROWTH)) + 1);
    this.#counts[i]! += 1;
    this.#n++;
    if (ms > this.#max) this.#max = ms;
  }

  /** The p-th percentile: the upper edge of the bucket it falls in (never above the largest sample). */
  percentile(p: number): number {
    if (this.#n === 0) return 0;
    const rank = Math.min(this.#n - 1, Math.floor((p / 100) * this.#n));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.#counts[i]!;
      if (seen > rank) return Math.min(this.#max, i === 0 ? 1 : GROWTH ** i);
    }
    return this.#max;
  }

  summary(): DurationSummary {
    const round = (x: number) => Math.round(x * 10) / 10;
    return { count: this.#n, p50Ms: round(this.percentile(50)), p99Ms: round(this.percentile(99)), maxMs: round(this.#max) };
  }

  reset(): void {
    this.#counts.fill(0);
    this.#n = 0;
    this.#max = 0;
  }
}
