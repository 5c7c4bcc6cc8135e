import v8 from "node:v8";
import vm from "node:vm";
import type { Logger } from "../log.ts";

type GcFunction = (options: { type: "major"; execution: "sync"; flavor: "last-resort" }) => void;
let gcFunction: GcFunction | undefined;

/**
 * V8 keeps the pages a garbage collection frees in a pool for reuse and hands them back to the
 * system only in a memory-reducing collection, which it runs by itself only when the process is
 * idle; a connector streaming values never is. After loading a 100,000-item mapping the pool held
 * ~450 MB of a 600 MB RSS around a 70 MB heap, for good. One memory-reducing collection after such
 * a one-time burst returns it (measured: 597 → 176 MB). It pauses the process for a moment, so it
 * is for bursts only: startup, a (re)subscribe, a mapping reload.
 */
export function releaseFreedMemory(log: Logger, reason: string): void {
  if (!gcFunction) {
    // Node documents this way to reach V8's gc() without starting the process with --expose-gc.
    v8.setFlagsFromString("--expose-gc");
    const gc: unknown = vm.runInNewContext("gc");
    if (typeof gc !== "function") {
      log.warn("this Node offers no gc(); freed memory stays with V8 until it is idle");
      return;
    }
    gcFunction = gc as GcFunction;
  }
  const before = process.memoryUsage.rss();
  const started = performance.now();
  gcFunction({ type: "major", execution: "sync", flavor: "last-resort" });
  const after = process.memoryUsage.rss();
  log.info({ reason, rssBeforeMb: Math.round(before / 1e6), rssAfterMb: Math.round(after / 1e6), pauseMs: Math.round(performance.now() - started) }, "returned freed memory to the system");
}

/**
 * Runs releaseFreedMemory once, `delayMs` after the last of a burst of calls, and at most once
 * per `minIntervalMs`: a machine whose connection flaps must not pause the connector every time.
 * Ten seconds, not two: the first values of 100,000 new monitored items are still arriving two
 * seconds after the last one was created, and the pause (0.3 s) would hold them up.
 */
export function releaseAfterBurst(log: Logger, delayMs = 10_000, minIntervalMs = 60_000): { schedule(reason: string): void; cancel(): void } {
  let timer: NodeJS.Timeout | undefined;
  let lastRun = -Infinity;
  return {
    schedule(reason) {
      clearTimeout(timer);
      const wait = Math.max(delayMs, lastRun + minIntervalMs - performance.now());
      timer = setTimeout(() => {
        lastRun = performance.now();
        try {
          releaseFreedMemory(log, reason);
        } catch (err) {
          log.warn({ err: (err as Error).message }, "could not return freed memory");
        }
      }, wait);
      timer.unref();
    },
    cancel() {
      clearTimeout(timer);
    },
  };
}
