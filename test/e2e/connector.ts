/**
 * `kerf run` and `kerf health` as real child processes, for the lifecycle tests: start, stop
 * with a signal under the container contract, read what the stopped process left in its buffer.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { parse, stringify } from "yaml";
import { DurableBuffer } from "../../src/buffer/buffer.ts";
import { setupDemo, type Demo, type DemoOptions } from "../../src/demo/setup.ts";
import { silentLogger } from "../../src/log.ts";
import { tempDir } from "../helpers/env.ts";
import type { StoredItem } from "../../src/devcloud/store.ts";
import type { Item } from "../../src/message.ts";

const repo = path.resolve(import.meta.dirname, "../..");
const kerfBin = path.join(repo, "bin/kerf.js");

/**
 * Simulator and devcloud for `kerf run` children: the child enrols over the devcloud's EST with
 * the bootstrap token the demo config names. `stop` ends both and removes the folder.
 */
export async function demoForKerfRun(options: Pick<DemoOptions, "load" | "commands"> = {}): Promise<{ demo: Demo; dir: string; stop(): Promise<void> }> {
  const tmp = await tempDir();
  const demo = await setupDemo({ stateDir: tmp.dir, logger: silentLogger(), ...options });
  return {
    demo,
    dir: tmp.dir,
    async stop() {
      await demo.stop();
      await tmp.cleanup();
    },
  };
}

/** What a container runtime allows between SIGTERM and SIGKILL. */
export const KILL_AFTER_MS = 10_000;

export interface Connector {
  child: ChildProcess;
  /** The connector's log lines (pino JSON on stdout), parsed. */
  lines: { level: number; msg: string; [field: string]: unknown }[];
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function startConnector(configFile: string, stateDir: string, env: Record<string, string> = {}): Connector {
  const child = spawn(kerfBin, ["run", "--config", configFile, "--state-dir", stateDir], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
  const lines: Connector["lines"] = [];
  let rest = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    const parts = (rest + chunk).split("\n");
    rest = parts.pop()!;
    for (const p of parts) {
      try {
        lines.push(JSON.parse(p) as Connector["lines"][number]);
      } catch {
        // not a log line
      }
    }
  });
  let err = "";
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  return { child, lines, stderr: () => err, exited };
}

/**
 * The container contract: SIGTERM, then SIGKILL after KILL_AFTER_MS. `killed` says whether the
 * SIGKILL was needed; a clean stop has exited by itself with code 0 before it.
 */
export async function stopLikeAContainer(c: Connector): Promise<{ code: number | null; signal: NodeJS.Signals | null; killed: boolean }> {
  let killed = false;
  c.child.kill("SIGTERM");
  const timer = setTimeout(() => {
    killed = true;
    c.child.kill("SIGKILL");
  }, KILL_AFTER_MS);
  const result = await c.exited;
  clearTimeout(timer);
  return { ...result, killed };
}

export async function killHard(c: Connector): Promise<void> {
  if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill("SIGKILL");
  await c.exited;
}

/** `kerf health --state-dir DIR` as the image's HEALTHCHECK runs it. */
export async function kerfHealth(stateDir: string): Promise<{ code: number | null; stdout: string }> {
  const child = spawn(kerfBin, ["health", "--state-dir", stateDir], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  const code = await new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
  return { code, stdout };
}

/** Rewrites a config file written by writeDemoConfig/setupDemo; `edit` changes the parsed YAML in place. */
export function editConfig(configFile: string, edit: (config: Record<string, any>) => void): void {
  const config = parse(readFileSync(configFile, "utf8")) as Record<string, any>;
  edit(config);
  writeFileSync(configFile, stringify(config));
}

/** The data items a stopped connector left in its buffer (not yet acknowledged), by key, and the buffer's counters. */
export function readBuffer(stateDir: string, machine: string): { items: Map<string, Item[]>; stats: ReturnType<DurableBuffer["stats"]> } {
  const buffer = DurableBuffer.open({ path: path.join(stateDir, "buffer.db"), maxBytes: 1024 ** 3, logger: silentLogger() });
  try {
    const items = new Map<string, Item[]>();
    for (const batch of buffer.next(1_000_000)) {
      for (const m of batch.messages) {
        if (m.kind !== "data" || m.machine !== machine) continue;
        for (const item of m.items) {
          const list = items.get(item.key) ?? [];
          list.push(item);
          items.set(item.key, list);
        }
      }
    }
    return { items, stats: buffer.stats() };
  } finally {
    buffer.close();
  }
}

/**
 * Values of one load counter that went missing between its first and its last value: every
 * value must be at the cloud or still in the buffer.
 */
export function missingValues(cloud: StoredItem[], buffered: readonly Item[]): number[] {
  const values = new Set([...cloud, ...buffered].map((i) => Number(i.v)));
  const sorted = [...values].sort((a, b) => a - b);
  const missing: number[] = [];
  for (let i = 1; i < sorted.length; i++) for (let v = sorted[i - 1]! + 1; v < sorted[i]!; v++) missing.push(v);
  return missing;
}

/** A TCP server that accepts connections and never answers: a peer that has hung. */
export async function blackHole(): Promise<{ port: number; accepted(): number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((s) => {
    accepted++;
    sockets.add(s);
    s.on("error", () => undefined);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    accepted: () => accepted,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

export type ProxyMode = "forward" | "black-hole" | "refuse";

/**
 * A TCP proxy to an OPC UA server that a test can turn into a black hole (new connections are
 * accepted and never answered) or a closed door (refused), cutting the connections it carries.
 */
export async function switchableProxy(
  targetPort: number,
  options: { upstreamBytesPerSecond?: number } = {},
): Promise<{ port: number; mode(m: ProxyMode): void; upstreamBytes(): number; accepted(): number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let mode: ProxyMode = "forward";
  let up = 0;
  let accepted = 0;
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.on("error", () => undefined);
    s.on("close", () => sockets.delete(s));
  };
  const server = net.createServer((client) => {
    accepted++;
    track(client);
    if (mode === "refuse") return void client.destroy();
    if (mode === "black-hole") return;
    const upstream = net.connect(targetPort, "127.0.0.1");
    track(upstream);
    const rate = options.upstreamBytesPerSecond;
    client.on("data", (d: Buffer) => {
      up += d.length;
      upstream.write(d);
      if (!rate) return;
      // a slow link: what the client sends goes up at `rate`
      client.pause();
      setTimeout(() => client.resume(), (d.length / rate) * 1000);
    });
    upstream.pipe(client);
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    mode(m) {
      mode = m;
      accepted = 0;
      for (const s of sockets) s.destroy();
    },
    upstreamBytes: () => up,
    accepted: () => accepted,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
