import { writeFileSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { checkLockFile, tryCheckLock } from "../../src/update/check-lock.ts";
import { runCleanups, tempDir, type Cleanups } from "../uplink/helpers.ts";

const cleanup: Cleanups = [];
afterEach(() => runCleanups(cleanup));

describe("the update check lock", () => {
  it("lets one check run at a time, and takes over the lock of a process that is gone", async () => {
    const { dir, remove } = await tempDir("kerf-check-lock-");
    cleanup.push(remove);
    const first = tryCheckLock(dir);
    expect("release" in first).toBe(true);
    expect(tryCheckLock(dir)).toEqual({ heldBy: process.pid });
    if ("release" in first) first.release();
    const second = tryCheckLock(dir);
    expect("release" in second).toBe(true);
    if ("release" in second) second.release();
    // a holder that died (pid 2^22 + 1 is above Linux's pid_max): stale, taken over
    writeFileSync(checkLockFile(dir), JSON.stringify({ pid: 4_194_305 }));
    expect("release" in tryCheckLock(dir)).toBe(true);
  });
});
