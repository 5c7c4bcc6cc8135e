import { KerfError, type KerfErrorContext } from "./errors.ts";

/** Rejects with a TIMEOUT KerfError "<what> timed out after <ms> ms" when `promise` takes longer; the timer never outlives it. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string, context?: KerfErrorContext): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new KerfError("TIMEOUT", `${what} timed out after ${ms} ms`, { context })), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
