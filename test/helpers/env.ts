import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Agent } from "../../src/agent/agent.ts";
import { loadConfig } from "../../src/config/load.ts";
import { setupDemo, DEMO_MACHINE, type Demo, type DemoOptions } from "../../src/demo/setup.ts";
import { silentLogger } from "../../src/log.ts";
import type { StoredItem } from "../../src/devcloud/store.ts";

export { DEMO_MACHINE };

/** A temp dir removed by the returned cleanup. */
export async function tempDir(prefix = "kerf-test-"): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export async function waitFor<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 20_000, stepMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** Simulator, devcloud and an in-process connector, as `kerf demo` runs them. */
export async function startEnvironment(options: Omit<DemoOptions, "stateDir" | "logger"> & { startAgent?: boolean; editConfig?: (file: string) => void } = {}) {
  const tmp = await tempDir();
  const logger = silentLogger();
  const demo: Demo = await setupDemo({ ...options, stateDir: tmp.dir, logger });
  options.editConfig?.(demo.configFile);
  const loaded = await loadConfig(demo.configFile);
  // The agent enrols over the devcloud's EST with the demo's bootstrap token on its first start.
  const agent = new Agent({ loaded, stateDir: demo.connectorStateDir, logger });
  if (options.startAgent !== false) await agent.start();
  let stopped = false;
  return {
    dir: tmp.dir,
    demo,
    agent,
    loaded,
    async stop() {
      if (stopped) return;
      stopped = true;
      await agent.stop().catch(() => undefined);
      await demo.stop();
      await tmp.cleanup();
    },
  };
}

export interface SeriesCheck {
  first: number;
  last: number;
  count: number;
  duplicates: number;
  /** [after, before] pairs: values missing between two received ones. */
  gaps: [number, number][];
}

/** Checks one load counter's series as received by the cloud: each value is the previous + 1. */
export function checkSeries(items: StoredItem[]): SeriesCheck {
  const values = items.map((i) => Number(i.v)).sort((a, b) => a - b);
  let duplicates = 0;
  const gaps: [number, number][] = [];
  for (let i = 1; i < values.length; i++) {
    const d = values[i]! - values[i - 1]!;
    if (d === 0) duplicates++;
    else if (d > 1) gaps.push([values[i - 1]!, values[i]!]);
  }
  return { first: values[0] ?? NaN, last: values.at(-1) ?? NaN, count: values.length, duplicates, gaps };
}

export function loadKey(i: number): string {
  return `load.${String(i).padStart(5, "0")}`;
}
