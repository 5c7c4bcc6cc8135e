import { KerfError } from "../errors.ts";
import { MAX_LOAD_COUNT } from "./nodes.ts";

export interface LoadOptions {
  /** How many counters, 1..100000. */
  count: number;
  /** Milliseconds between steps, ≥ 10. */
  periodMs: number;
  /** The counters' value before the first step; default 0. A restarted server can go on counting. */
  start?: number;
}

/** Checked before node-opcua is even loaded, so a typo fails at once. */
export function validateLoad(load: LoadOptions): void {
  if (!Number.isInteger(load.count) || load.count < 1 || load.count > MAX_LOAD_COUNT) {
    throw new KerfError("USAGE", `load count must be a whole number in 1..${MAX_LOAD_COUNT}, got ${load.count}`);
  }
  if (!Number.isInteger(load.periodMs) || load.periodMs < 10) {
    throw new KerfError("USAGE", `load period must be a whole number of milliseconds ≥ 10, got ${load.periodMs}`);
  }
}
