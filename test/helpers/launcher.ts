/**
 * `kerf launch` as a real child process, in its own process group so that a test can SIGKILL the
 * launcher together with the `kerf run` it started (what a power loss or `docker kill` does).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { writeFileAtomic } from "../../src/certs/files.ts";
import { requestFile } from "../../src/update/request.ts";

const repo = path.resolve(import.meta.dirname, "../..");
export const kerfBin = path.join(repo, "bin/kerf.js");

export interface LaunchedProcess {
  child: ChildProcess;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILL to the whole process group: the launcher and its connector. */
  killGroup(): Promise<void>;
}

export function startLauncher(configFile: string, stateDir: string, env: Record<string, string> = {}): LaunchedProcess {
  const child = spawn(kerfBin, ["launch", "--config", configFile, "--state-dir", stateDir], { detached: true, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
  let out = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (out += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  return {
    child,
    output: () => out,
    exited,
    async killGroup() {
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        // the group is gone already
      }
      await exited;
    },
  };
}

/** Writes the install request as the agent does. */
export function requestInstall(stateDir: string, bundle: { dir: string; version: string; sha256: string }): void {
  mkdirSync(path.dirname(requestFile(stateDir)), { recursive: true });
  writeFileAtomic(requestFile(stateDir), JSON.stringify({ ...bundle, requestedAt: new Date().toISOString() }), 0o600);
}
