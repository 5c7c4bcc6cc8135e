import type { Message } from "../message.ts";

/**
 * The latest value of a few watched (machine, key) pairs, as the machines hand them to the
 * buffer: what the update lock (update.lock.values) reads. Only watched keys cost anything.
 */
export class LatestValues {
  readonly #watched = new Map<string, Set<string>>();
  readonly #values = new Map<string, unknown>();

  constructor(watch: readonly { machine: string; key: string }[]) {
    for (const w of watch) this.#watched.set(w.machine, (this.#watched.get(w.machine) ?? new Set()).add(w.key));
  }

  get empty(): boolean {
    return this.#watched.size === 0;
  }

  observe(messages: readonly Message[]): void {
    for (const m of messages) {
      if (m.kind !== "data") continue;
      const keys = this.#watched.get(m.machine);
      if (!keys) continue;
      for (const item of m.items) if (keys.has(item.key)) this.#values.set(`${m.machine}\u0000${item.key}`, item.v);
    }
  }

  /** undefined while no value has been seen since start. */
  get(machine: string, key: string): unknown {
    return this.#values.get(`${machine}\u0000${key}`);
  }
}
