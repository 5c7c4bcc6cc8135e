import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import path from "node:path";

export const ROOT = path.resolve(import.meta.dirname, "../..");

export interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** `kerf <args>` as a child process, as an operator runs it; killed with SIGKILL if it hangs. */
export function kerf(args: string[], options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Result> {
  return collect(start(args, options.env), options.timeoutMs ?? 30_000);
}

/** Runs any command from the repository root, e.g. through npx. */
export function command(file: string, args: string[], timeoutMs = 30_000): Promise<Result> {
  return collect(spawn(file, args, { cwd: ROOT, stdio: "pipe" }), timeoutMs);
}

/** A running `kerf` child: its output so far, and a way to wait for a line in it. */
export interface Running {
  child: ChildProcessWithoutNullStreams;
  stdout: () => string;
  stderr: () => string;
  /** Resolves when stdout or stderr has matched `pattern`; rejects if the child ends first. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  exited: Promise<Result>;
}

export function startKerf(args: string[], env?: NodeJS.ProcessEnv): Running {
  const child = start(args, env);
  let out = "";
  let err = "";
  const waiters = new Set<() => void>();
  const wake = () => waiters.forEach((w) => w());
  child.stdout.on("data", (d: Buffer) => ((out += d.toString()), wake()));
  child.stderr.on("data", (d: Buffer) => ((err += d.toString()), wake()));
  const exited = new Promise<Result>((resolve) => child.on("close", (code, signal) => (resolve({ code, signal, stdout: out, stderr: err }), wake())));
  let ended = false;
  void exited.then(() => (ended = true));
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitFor: (pattern, timeoutMs = 60_000) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => finish(new Error(`timed out waiting for ${pattern} in:\n${out}\n${err}`)), timeoutMs);
        const check = () => {
          const m = pattern.exec(out) ?? pattern.exec(err);
          if (m) finish(undefined, m);
          else if (ended) finish(new Error(`kerf ended before ${pattern}:\n${out}\n${err}`));
        };
        const finish = (e?: Error, m?: RegExpExecArray) => {
          clearTimeout(timer);
          waiters.delete(check);
          if (e) reject(e);
          else resolve(m!);
        };
        waiters.add(check);
        check();
      }),
  };
}

function start(args: string[], env?: NodeJS.ProcessEnv): ChildProcessWithoutNullStreams {
  // process.execPath is the project's Node 24 under vitest; bin/kerf.js adds the product's V8 flags.
  return spawn(process.execPath, ["bin/kerf.js", ...args], { cwd: ROOT, env: env ?? process.env, stdio: "pipe" });
}

function collect(child: ChildProcessWithoutNullStreams, timeoutMs: number): Promise<Result> {
  child.stdin.end();
  return new Promise((resolve, reject) => {
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}
