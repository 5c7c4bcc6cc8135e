import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import path from "node:path";
import { KerfError } from "../errors.ts";
import { appDir } from "./pointer.ts";

/**
 * One launcher per state directory: two would start two connectors on one buffer and race on
 * the pointer. The lock is a file created with O_EXCL that holds the launcher's pid. A lock
 * whose pid is gone (a SIGKILL, a power loss) is stale and taken over; so is one that names our
 * own pid, which after a container restart is the same pid 1 that wrote it before.
 */
export function takeLauncherLock(stateDir: string): { release(): void } {
  const dir = appDir(stateDir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, "launcher.lock");
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(file, "wx", 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return { release: () => rmSync(file, { force: true }) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw new KerfError("UPDATE_STATE", `cannot create the launcher lock ${file}: ${(err as Error).message}`, { cause: err });
    }
    const holder = Number.parseInt(readFileSync(file, "utf8").trim(), 10);
    if (attempt === 0 && (!Number.isInteger(holder) || holder === process.pid || !alive(holder))) {
      // Stale: its holder is gone. (Two launchers started in the same instant over one stale lock
      // could both take it; a container runs one launcher, so that race is left open.)
      rmSync(file, { force: true });
      continue;
    }
    throw new KerfError("UPDATE_STATE", `another kerf launch (pid ${holder}) runs for the state directory ${stateDir}`, {
      details: [`${file} holds its pid; only one launcher may run per state directory`],
    });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, under another user
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
