/**
 * One update check at a time per state folder: the running agent and `kerf update check|apply`
 * take <state>/update/check.lock (created exclusively; a lock whose process is gone is stale).
 */
import { mkdirSync, openSync, readFileSync, rmSync, writeSync, closeSync } from "node:fs";
import path from "node:path";
import { isAlive, processIdentity, type ProcessIdentity } from "../agent/health.ts";

export const checkLockFile = (stateDir: string) => path.join(stateDir, "update", "check.lock");

/** Takes the lock, or returns the pid holding it. */
export function tryCheckLock(stateDir: string): { release(): void } | { heldBy: number } {
  const file = checkLockFile(stateDir);
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, "wx", 0o600);
      writeSync(fd, JSON.stringify(processIdentity()));
      closeSync(fd);
      return { release: () => rmSync(file, { force: true }) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    let holder: ProcessIdentity | null = null;
    try {
      holder = JSON.parse(readFileSync(file, "utf8")) as ProcessIdentity;
    } catch {
      // written in one call right after creation: unreadable means its writer died in between
    }
    if (holder && isAlive(holder)) return { heldBy: holder.pid };
    rmSync(file, { force: true });
  }
  return { heldBy: -1 };
}

/** Waits for the lock up to `timeoutMs`; null when another check kept it. */
export async function takeCheckLock(stateDir: string, timeoutMs: number): Promise<{ release(): void } | { heldBy: number }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const lock = tryCheckLock(stateDir);
    if ("release" in lock || Date.now() >= deadline) return lock;
    await new Promise((r) => setTimeout(r, 250));
  }
}
