/**
 * `kerf run` as the chaos suite's child process: started with the clock preload, its log lines
 * watched for the moments the accounting needs, and killed with SIGKILL only in a way that
 * proves the kill happened.
 */
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { NODE_FLAGS } from "../update/launcher.ts";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const kerfBin = path.join(repo, "bin/kerf.js");
const preload = path.join(repo, "src/chaos/clock-preload.ts");

export interface ChaosConnector {
  child: ChildProcess;
  startedAt: number;
  /** When the suite last received its "connected and subscribed" or "channel repaired" line (the suite's clock). */
  subscribedAt: number | undefined;
  /** When the suite received each buffer_full eviction line. */
  evictions: number[];
  /** The first 200 log messages at INFO and above, with the suite's time of arrival. */
  messages: string[];
  /** WARN, ERROR and FATAL lines (the first 20), for the report. */
  errors: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
}

export function startChaosConnector(o: { configFile: string; stateDir: string; clockFile: string; onSubscribed?: (at: number) => void }): ChaosConnector {
  // The flags of bin/kerf.js's shebang, plus the preload that lets the suite step the wall clock.
  const child = spawn(
    process.execPath,
    [...NODE_FLAGS, "--import", preload, kerfBin, "run", "--config", o.configFile, "--state-dir", o.stateDir],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, KERF_CLOCK_SHIFT_FILE: o.clockFile } },
  );
  const c: ChaosConnector = {
    child,
    startedAt: Date.now(),
    subscribedAt: undefined,
    evictions: [],
    errors: [],
    messages: [],
    exited: new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal }))),
    stderr: () => err,
  };
  let rest = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    const parts = (rest + chunk).split("\n");
    rest = parts.pop()!;
    for (const p of parts) {
      let line: { level?: number; msg?: string; event?: string };
      try {
        line = JSON.parse(p) as typeof line;
      } catch {
        continue;
      }
      // Reading again: a new session subscribed, or node-opcua repaired the channel and kept the
      // session's subscriptions (after a server restart too, when it recreated the session itself).
      if (line.msg === "connected and subscribed" || line.msg === "channel repaired; session and subscriptions kept") {
        c.subscribedAt = Date.now();
        o.onSubscribed?.(c.subscribedAt);
      }
      if ((line.level ?? 0) >= 30 && c.messages.length < 200) c.messages.push(`${new Date().toISOString().slice(11, 23)} ${line.msg}`);
      if (line.event === "buffer_full") c.evictions.push(Date.now());
      if ((line.level ?? 0) >= 40 && line.event !== "buffer_full" && c.errors.length < 20) c.errors.push(p.slice(0, 500));
    }
  });
  let err = "";
  child.stderr!.setEncoding("utf8").on("data", (d: string) => {
    if (err.length < 20_000) err += d;
  });
  return c;
}

/**
 * SIGKILL, and proof that it happened: the process was alive before, its exit says SIGKILL,
 * and its pid is gone after. A process that had already exited by itself is a failed kill
 * (and a failed connector), not a kill.
 */
export async function killAndConfirm(c: Pick<ChaosConnector, "child" | "exited">, timeoutMs = 10_000): Promise<{ ok: true } | { ok: false; reason: string }> {
  const pid = c.child.pid;
  if (pid === undefined) return { ok: false, reason: "the process never started" };
  if (c.child.exitCode !== null || c.child.signalCode !== null) {
    return { ok: false, reason: `pid ${pid} had already exited (code ${c.child.exitCode}, signal ${c.child.signalCode}) before the kill` };
  }
  try {
    process.kill(pid, "SIGKILL");
  } catch (err) {
    return { ok: false, reason: `kill(${pid}, SIGKILL) failed: ${(err as Error).message}` };
  }
  let timer: NodeJS.Timeout | undefined;
  const exit = await Promise.race([c.exited, new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), timeoutMs)))]);
  clearTimeout(timer);
  if (exit === null) return { ok: false, reason: `pid ${pid} still running ${timeoutMs} ms after SIGKILL` };
  if (exit.signal !== "SIGKILL") return { ok: false, reason: `pid ${pid} ended with code ${exit.code}, signal ${exit.signal}, not by SIGKILL` };
  try {
    process.kill(pid, 0);
    return { ok: false, reason: `pid ${pid} still exists after its exit` };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ESRCH") return { ok: false, reason: `pid ${pid}: ${(err as Error).message}` };
  }
  return { ok: true };
}

/** SIGTERM and wait for the exit (the container contract: 10 s, then SIGKILL). */
export async function stopGracefully(c: ChaosConnector): Promise<{ code: number | null; signal: NodeJS.Signals | null; killed: boolean }> {
  if (c.child.exitCode !== null || c.child.signalCode !== null) return { ...(await c.exited), killed: false };
  let killed = false;
  c.child.kill("SIGTERM");
  const timer = setTimeout(() => {
    killed = true;
    c.child.kill("SIGKILL");
  }, 10_000);
  const result = await c.exited;
  clearTimeout(timer);
  return { ...result, killed };
}
