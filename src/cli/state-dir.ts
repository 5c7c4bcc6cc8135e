import { mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { KerfError } from "../errors.ts";

export const DEFAULT_STATE_DIR = "/var/lib/kerf";
export const DEFAULT_CONFIG = "/etc/kerf/kerf.yaml";

/** --state-dir, else KERF_STATE_DIR (unless empty), else `fallback`; absolute. */
export function stateDirOption(value: string | undefined, fallback = DEFAULT_STATE_DIR): string {
  return path.resolve(value ?? (process.env.KERF_STATE_DIR || undefined) ?? fallback);
}

/** --config, else KERF_CONFIG (unless empty), else /etc/kerf/kerf.yaml: the same for kerf run and the commissioning commands. */
export function configOption(value: string | undefined): string {
  return value ?? (process.env.KERF_CONFIG || undefined) ?? DEFAULT_CONFIG;
}

/**
 * Creates the state directory when it is missing and proves that this process can write in it,
 * before anything starts: a command that cannot keep its state must say so at once. Node's
 * recursive mkdir never returns for a path that the file system refuses (below /proc it loops,
 * allocating), so each missing level is made here, one at a time.
 */
export function prepareStateDir(dir: string): string {
  const missing: string[] = [];
  for (let d = dir; ; d = path.dirname(d)) {
    const kind = kindOf(dir, d);
    if (kind === "directory") break;
    if (kind === "other") throw stateDirError(dir, `${d} is a file, not a directory`);
    missing.unshift(d);
    if (path.dirname(d) === d) break;
  }
  for (const d of missing) {
    try {
      mkdirSync(d, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw stateDirError(dir, `cannot create ${d}: ${reason(err, path.dirname(d))}`);
    }
  }
  const probe = path.join(dir, `.kerf-write-test-${process.pid}`);
  try {
    writeFileSync(probe, "");
    rmSync(probe, { force: true });
  } catch (err) {
    throw stateDirError(dir, `cannot write in it: ${reason(err, dir)}`);
  }
  return dir;
}

function kindOf(dir: string, p: string): "directory" | "other" | "missing" {
  try {
    return statSync(p).isDirectory() ? "directory" : "other";
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return "missing";
    throw stateDirError(dir, `cannot look at ${p}: ${reason(err, path.dirname(p))}`);
  }
}

function reason(err: unknown, parent: string): string {
  const code = (err as NodeJS.ErrnoException).code ?? "";
  const who = typeof process.getuid === "function" ? `uid ${process.getuid()}` : "this user";
  const text: Record<string, string> = {
    EACCES: `permission denied: ${who} may not write in ${parent}`,
    EPERM: `operation not permitted: ${who} may not write in ${parent}`,
    EROFS: "the file system is read-only",
    ENOENT: "the file system does not allow new entries there",
    ENOSPC: "no space left on the device",
    EDQUOT: "disk quota exceeded",
  };
  return `${text[code] ?? (err as Error).message}${code ? ` (${code})` : ""}`;
}

function stateDirError(dir: string, problem: string): KerfError {
  return new KerfError("STATE_DIR", `cannot use the state directory ${dir}: ${problem}`, {
    details: ["kerf keeps its buffer, certificates and health report there: give a directory this user can write, with --state-dir DIR or KERF_STATE_DIR"],
  });
}
