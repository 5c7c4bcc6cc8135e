/**
 * Collapses a burst of drops into at most one log line per interval. A full buffer
 * evicts on every append; one warning per append would bury every other log line.
 * Nothing is swallowed: what is pending when the interval ends (or at close) is
 * written then, with the counts summed.
 */
export class DropLog {
  readonly #emit: (batches: number, items: number) => void;
  readonly #intervalMs: number;
  #batches = 0;
  #items = 0;
  #lastEmit = Number.NEGATIVE_INFINITY;
  #timer: NodeJS.Timeout | undefined;

  constructor(emit: (batches: number, items: number) => void, intervalMs = 1000) {
    this.#emit = emit;
    this.#intervalMs = intervalMs;
  }

  add(batches: number, items: number): void {
    this.#batches += batches;
    this.#items += items;
    const wait = this.#lastEmit + this.#intervalMs - Date.now();
    if (wait <= 0) {
      this.flush();
    } else if (this.#timer === undefined) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.flush();
      }, wait);
      // A pending log line must not keep the process alive.
      this.#timer.unref();
    }
  }

  flush(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#batches === 0 && this.#items === 0) return;
    const batches = this.#batches;
    const items = this.#items;
    this.#batches = 0;
    this.#items = 0;
    this.#lastEmit = Date.now();
    this.#emit(batches, items);
  }
}
