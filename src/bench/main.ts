/**
 * End-to-end benchmark: the simulator in load mode, devcloud, the connector as its own
 * process (real buffer, real mTLS uplink) and, in the same run, a bare node-opcua client
 * that only counts the same changes (the ceiling).
 *
 *   npm run bench [-- --nodes 1000 --period 100 --seconds 20 --mode SignAndEncrypt --policy Basic256Sha256]
 *   npm run bench -- --scenario all      every scenario: 10k/s, 50k/s, 100k items, 10k/s against a hostile cloud
 *   npm run bench -- --per-publish N     the simulator's cap on notifications per publish response
 *                                         (node-opcua's default, 1,000, when absent)
 *   npm run bench -- --fsync-delay-ms N  every fsync of the connector takes N ms longer (strace):
 *                                         an edge PC's slow eMMC or SD card
 *   npm run bench -- --cpu-hogs N        N busy-loop processes share the cores (a busy machine),
 *                                         for the bare client's run and the connector's alike
 *   npm run bench -- --node-options=...  V8/Node flags for the connector (NODE_OPTIONS)
 *   npm run bench -- --buffer-encryption each scenario twice, the buffer in clear and then encrypted
 *                                         (buffer.encryption.keyFile), for the cost: connectorCpuUsPerValue
 *                                         and latencyP99Ms side by side
 *   npm run bench -- --token-ttl S       each scenario twice: without access tokens, then with
 *                                         tokens living S s (renewed at ~75 %), to show their cost
 *
 * The bare client's ceiling runs beside the connector, or alone before it against the same
 * simulator where one server on these cores cannot serve both (100k items). Prints a table and
 * one JSON line per scenario.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes, X509Certificate } from "node:crypto";
import { copyFileSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { HelpRequested, intOption, noPositionals, parseCli } from "../cli/args.ts";
import { startDevCloud } from "../devcloud/index.ts";
import type { MemoryStore } from "../devcloud/memory-store.ts";
import { DEMO_INSTANCE, DEMO_MACHINE, writeDemoConfig } from "../demo/setup.ts";
import type { HealthReport } from "../agent/health.ts";
import { createLogger } from "../log.ts";
import { routeOpcuaLogging } from "../opcua/logging.ts";
import { openClientPki } from "../opcua/trust/pki.ts";
import type { SecurityModeName, SecurityPolicyName } from "../opcua/types.ts";
import { parse, stringify } from "yaml";
import { LatencyHistogram } from "./histogram.ts";
import { faultCounts, hostileFaults } from "./hostile.ts";

interface Scenario {
  name: string;
  /**
   * How the bare client's ceiling is measured: beside the connector, or alone before it against
   * the same simulator (where one server on these cores cannot serve both at once).
   */
  ceiling: "beside" | "before";
  /** The simulator's cap on notifications per publish response; node-opcua's default (1,000) when absent. */
  perPublish?: number;
  /** The devcloud fails this share of ingest requests (seeded faults of every kind, src/devcloud/hostile.ts). */
  faults?: number;
  /** The connector's buffer is encrypted (buffer.encryption.keyFile). */
  bufferEncryption?: boolean;
  /** Bearer tokens on every request, living this long; without it, mutual TLS only. */
  tokenTtlSeconds?: number;
  nodes: number;
  periodMs: number;
  seconds: number;
  mode: SecurityModeName;
  policy: SecurityPolicyName;
}

const repo = path.resolve(import.meta.dirname, "../..");
const USAGE = `usage: npm run bench -- [--scenario 10k|50k|100k-items|10k-hostile|all] [--nodes N --period MS --seconds S]
                     [--mode M --policy P] [--per-publish N] [--fsync-delay-ms N] [--cpu-hogs N] [--node-options=...]
                     [--buffer-encryption] [--token-ttl S]
`;

/** Every option read and checked once, before anything starts: a mistake is one line and the usage, exit 2, as in every kerf command. */
const options = (() => {
  try {
    const { values, positionals } = parseCli(
      process.argv.slice(2),
      {
        scenario: { type: "string", default: "10k" },
        nodes: { type: "string" },
        period: { type: "string" },
        seconds: { type: "string" },
        mode: { type: "string", default: "SignAndEncrypt" },
        policy: { type: "string", default: "Basic256Sha256" },
        "node-options": { type: "string" },
        "per-publish": { type: "string" },
        "fsync-delay-ms": { type: "string" },
        "cpu-hogs": { type: "string" },
        "buffer-encryption": { type: "boolean" },
        "token-ttl": { type: "string" },
      },
      "bench",
      USAGE,
    );
    noPositionals(positionals, "bench", USAGE);
    return {
      ...values,
      nodes: intOption(values.nodes, "nodes", 0),
      period: intOption(values.period, "period", 0),
      seconds: intOption(values.seconds, "seconds", 0),
      perPublish: intOption(values["per-publish"], "per-publish", 0),
      fsyncDelayMs: intOption(values["fsync-delay-ms"], "fsync-delay-ms", 0),
      cpuHogs: intOption(values["cpu-hogs"], "cpu-hogs", 0),
      tokenTtl: intOption(values["token-ttl"], "token-ttl", 0),
    };
  } catch (err) {
    if (err instanceof HelpRequested) {
      process.stdout.write(err.usage);
      process.exit(0);
    }
    usageError((err as Error).message);
  }
})();

function usageError(message: string): never {
  process.stderr.write(`${message.startsWith("bench:") ? "" : "bench: "}${message}\n${USAGE}`);
  process.exit(2);
}

// The simulator runs at node-opcua's defaults (1,000 notifications per publish response) in every
// scenario that carries a target: that is what the field runs.
const presets: Record<string, Omit<Scenario, "mode" | "policy">> = {
  "10k": { name: "10k changes/s (1,000 nodes × 100 ms)", nodes: 1000, periodMs: 100, seconds: 20, ceiling: "beside" },
  "50k": { name: "50k changes/s (5,000 nodes × 100 ms)", nodes: 5000, periodMs: 100, seconds: 20, ceiling: "beside" },
  // One node-opcua server on these 2 cores cannot feed 100k items to two clients at once: the
  // bare client gets the simulator to itself first, then the connector does.
  "100k-items": { name: "100,000 items × 1 s", nodes: 100_000, periodMs: 1000, seconds: 30, ceiling: "before" },
  // A cloud behind a load balancer that fails a quarter of the requests: resets, 503/429, 413, lost answers, drips.
  "10k-hostile": { name: "10k changes/s, 25 % of requests faulted", nodes: 1000, periodMs: 100, seconds: 30, ceiling: "beside", faults: 0.25 },
};

/**
 * Each scenario as asked; with --buffer-encryption or --token-ttl, each again right after it with
 * the buffer encrypted, and with tokens living S s: the cost of each beside the plain run.
 */
function scenarios(): Scenario[] {
  const ttl = options.tokenTtl;
  return asked().flatMap((s) => [
    s,
    ...(options["buffer-encryption"] ? [{ ...s, name: `${s.name}, buffer encrypted`, bufferEncryption: true }] : []),
    ...(ttl ? [{ ...s, name: `${s.name}, tokens ${ttl} s`, tokenTtlSeconds: ttl }] : []),
  ]);
}

function asked(): Scenario[] {
  const sec = { mode: options.mode as SecurityModeName, policy: options.policy as SecurityPolicyName };
  const perPublish = options.perPublish ? { perPublish: options.perPublish } : {};
  if (options.nodes || options.period) {
    const nodes = options.nodes || 1000;
    const periodMs = options.period || 100;
    const ceiling = nodes * (1000 / periodMs) > 50_000 ? "before" : "beside";
    return [{ name: `${nodes} nodes × ${periodMs} ms`, nodes, periodMs, seconds: options.seconds || 20, ceiling, ...sec, ...perPublish }];
  }
  const names = options.scenario === "all" ? Object.keys(presets) : options.scenario.split(",");
  return names.map((n) => {
    const p = presets[n];
    if (!p) usageError(`unknown scenario '${n}'; known: ${Object.keys(presets).join(", ")}, all`);
    return { ...p, ...(options.seconds ? { seconds: options.seconds } : {}), ...perPublish, ...sec };
  });
}

/** Counters whose every value the cloud keeps, to count gaps and duplicates. */
const SAMPLED = 200;
const loadKey = (i: number) => `load.${String(i).padStart(5, "0")}`;

/** Peak RSS (VmHWM) and CPU seconds of a process, from /proc. */
function procStats(pid: number): { peakRssMb: number; cpuSeconds: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const hwm = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  return { peakRssMb: Math.round(hwm / 1024), cpuSeconds: ticks / 100 };
}

/** CPU seconds the whole machine has been busy, and those of the processes in `ours` (this one included). */
function machineCpu(ours: readonly number[]): { all: number; ours: number } {
  const fields = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = fields[3]! + fields[4]!;
  const all = (fields.reduce((a, b) => a + b, 0) - idle) / 100;
  let own = 0;
  for (const pid of [process.pid, ...ours]) {
    try {
      own += procStats(pid).cpuSeconds;
    } catch {
      // gone
    }
  }
  return { all, ours: own };
}

/** Collects a child's stdout until a line matches; resolves to everything read so far. */
function readLines(child: ChildProcess, done: (line: string) => boolean, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let all = "";
    const timer = setTimeout(() => reject(new Error(`no expected output within ${timeoutMs} ms`)), timeoutMs);
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      all += chunk;
      if (all.split("\n").some(done)) {
        clearTimeout(timer);
        resolve(all);
      }
    });
    child.once("exit", () => reject(new Error("process exited early")));
  });
}

/** The bare client: spawned, subscribed ("ready"), then told its window; SIGTERM ends it with its figures. */
interface Bare {
  child: ChildProcess;
  ready: Promise<string>;
  window(start: number, end: number): void;
  finish(): Promise<{ buckets: Record<number, number>; latency: { p50Ms: number; p99Ms: number; maxMs: number }; everyItemSeenMs: number | null }>;
}

function startBare(s: Scenario, endpointUrl: string, pkiDir: string): Bare {
  const options = { endpointUrl, pkiDir, nodes: s.nodes, periodMs: s.periodMs, mode: s.mode, policy: s.policy, spawnedAt: Date.now() };
  const child = spawn(process.execPath, [path.join(repo, "src/bench/bare-client.ts"), JSON.stringify(options)], { stdio: ["pipe", "pipe", "inherit"] });
  const lines: string[] = [];
  const waiters: { match: (l: string) => boolean; resolve: (l: string) => void }[] = [];
  let buf = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    buf += chunk;
    const parts = buf.split("\n");
    buf = parts.pop()!;
    for (const line of parts) {
      lines.push(line);
      for (const w of waiters) if (w.match(line)) w.resolve(line);
    }
  });
  const wait = (match: (l: string) => boolean, timeoutMs: number) =>
    new Promise<string>((resolve, reject) => {
      const found = lines.find(match);
      if (found) return resolve(found);
      const timer = setTimeout(() => reject(new Error(`bare client: no expected output within ${timeoutMs} ms`)), timeoutMs);
      waiters.push({ match, resolve: (l) => (clearTimeout(timer), resolve(l)) });
      child.once("exit", () => reject(new Error("bare client exited early")));
    });
  return {
    child,
    ready: wait((l) => l === "ready", 180_000),
    window: (start, end) => child.stdin!.write(`window ${start} ${end}\n`),
    async finish() {
      const exited = new Promise((r) => (child.exitCode === null ? child.once("exit", r) : r(null)));
      child.kill("SIGTERM");
      const result = JSON.parse(await wait((l) => l.startsWith("{"), 15_000));
      // It closes its session (deleting its monitored items) before it exits. Killed before that,
      // the server would keep sampling and queueing its 100,000 items until the session timed
      // out, on the connector's time.
      await Promise.race([exited, sleep(60_000)]);
      return { ...result, everyItemSeenMs: result.everyItemSeenMs ?? null };
    },
  };
}

/** Per stage, the largest p99 among the health reports. */
function worstStages(reports: Map<string, Record<string, { p99Ms: number }>>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const stages of reports.values()) for (const [name, s] of Object.entries(stages)) out[name] = Math.max(out[name] ?? 0, s.p99Ms);
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));
const sumWindow = (b: Record<number, number>, start: number, end: number) => {
  let n = 0;
  for (let sec = start; sec < end; sec++) n += b[sec] ?? 0;
  return n;
};
const round3 = (x: number) => Math.round(x * 1000) / 1000;

/** The bare client alone against the simulator, for one window: the ceiling where both cannot run at once. */
async function measureBareAlone(s: Scenario, endpointUrl: string, pkiDir: string, others: readonly ChildProcess[]) {
  const bare = startBare(s, endpointUrl, pkiDir);
  try {
    await bare.ready;
    const cpuBefore = procStats(bare.child.pid!);
    const ours = () => [bare.child.pid!, ...others.map((c) => c.pid!)];
    const machineBefore = machineCpu(ours());
    const start = Math.ceil(Date.now() / 1000) + 2;
    const end = start + s.seconds;
    bare.window(start, end);
    await sleep(end * 1000 - Date.now());
    const cpuAfter = procStats(bare.child.pid!);
    const machineAfter = machineCpu(ours());
    await sleep(3000);
    const peak = procStats(bare.child.pid!).peakRssMb;
    const finishing = Date.now();
    const result = await bare.finish();
    process.stderr.write(`bench: bare client closed its session and exited ${bare.child.exitCode === null ? "not within 60 s" : `in ${Date.now() - finishing} ms`}\n`);
    const percent = (cpuSeconds: number) => Math.round((cpuSeconds / s.seconds) * 1000) / 10;
    return {
      delivered: sumWindow(result.buckets, start, end),
      latency: result.latency,
      everyItemSeenMs: result.everyItemSeenMs,
      peakRssMb: peak,
      cpuPercent: percent(cpuAfter.cpuSeconds - cpuBefore.cpuSeconds),
      othersCpuPercent: percent(machineAfter.all - machineBefore.all - (machineAfter.ours - machineBefore.ours)),
    };
  } finally {
    if (bare.child.exitCode === null) bare.child.kill("SIGKILL");
    await new Promise((r) => (bare.child.exitCode === null ? bare.child.once("exit", r) : r(null)));
  }
}

/** A key file mounted apart from the state dir, as in production, named in the connector's config. */
function encryptBuffer(configFile: string, secretsDir: string): void {
  mkdirSync(secretsDir, { recursive: true, mode: 0o700 });
  const keyFile = path.join(secretsDir, "buffer.key");
  writeFileSync(keyFile, randomBytes(32), { mode: 0o600 });
  const config = parse(readFileSync(configFile, "utf8")) as { buffer?: Record<string, unknown> };
  config.buffer = { ...config.buffer, encryption: { keyFile } };
  writeFileSync(configFile, stringify(config));
}

async function runScenario(s: Scenario) {
  const dir = await mkdtemp(path.join(os.tmpdir(), "kerf-bench-"));
  const logger = createLogger({ level: "error" });
  routeOpcuaLogging(logger);
  const children: ChildProcess[] = [];
  let pid = 0;
  // History only for the counters the loss check samples (below).
  const sampled = new Set(Array.from({ length: Math.min(s.nodes, SAMPLED) }, (_, i) => loadKey(Math.floor((i * s.nodes) / Math.min(s.nodes, SAMPLED)))));
  const devcloud = await startDevCloud({
    dir: path.join(dir, "devcloud"),
    logger,
    storage: "memory",
    keep: (key) => sampled.has(key),
    faults: s.faults ? hostileFaults({ rate: s.faults, seed: 42 }) : {},
    requireTokens: s.tokenTtlSeconds !== undefined,
    ...(s.tokenTtlSeconds ? { tokenTtlSeconds: s.tokenTtlSeconds } : {}),
  });
  try {
    const connectorStateDir = path.join(dir, "connector");
    const simDir = path.join(dir, "simulator");
    // Both clients' certificates go into the simulator's trust list before it starts: explicit trust.
    const trusted = path.join(simDir, "simulator-pki", "trusted", "certs");
    mkdirSync(trusted, { recursive: true });
    const connectorPki = await openClientPki({ dir: path.join(connectorStateDir, "pki"), instance: DEMO_INSTANCE, logger });
    const barePkiDir = path.join(dir, "bare-pki");
    const barePki = await openClientPki({ dir: barePkiDir, instance: "bench-bare", logger });
    copyFileSync(connectorPki.certificateFile, path.join(trusted, "kerf.pem"));
    copyFileSync(barePki.certificateFile, path.join(trusted, "bench-bare.pem"));

    // The simulator is a process of its own, so that the OS can give it a core of its own.
    // Not through bin/kerf.js: the connector's 1 GB heap cap is too small for a server holding
    // 100k variables and the queues of 100k monitored items (it peaks near 2.4 GB).
    const perPublish = s.perPublish ? ["--max-notifications-per-publish", String(s.perPublish)] : [];
    const sim = spawn(process.execPath, ["--max-old-space-size=6144", path.join(repo, "src/main.ts"), "simulate", "--port", "0", "--load", String(s.nodes), "--period", String(s.periodMs), "--state-dir", simDir, ...perPublish], { stdio: ["ignore", "pipe", "inherit"] });
    children.push(sim);
    const lines = await readLines(sim, (l) => l.startsWith("started in"), 120_000);
    const endpointUrl = /^endpoint\s+(\S+)/m.exec(lines)![1]!;
    const simCert = new X509Certificate(readFileSync(/^certificate\s+(\S+)/m.exec(lines)![1]!)).raw;
    for (const pki of [connectorPki, barePki]) {
      await pki.certificateManager.trustCertificate(simCert);
      await pki.certificateManager.dispose();
    }
    // Without tokens the config has no cloud.auth: the devcloud without its issuer.
    const cloud = s.tokenTtlSeconds ? devcloud : { url: devcloud.url, pin: devcloud.pin, ca: devcloud.ca };
    // The connector enrols over the devcloud's EST on its first start, as in the demo.
    const enrolment = { url: devcloud.est.url, token: devcloud.est.issueBootstrapToken(DEMO_INSTANCE) };
    const { configFile } = await writeDemoConfig({ dir: path.join(dir, "config"), endpointUrl, devcloud: cloud, enrolment, load: { count: s.nodes, periodMs: s.periodMs }, securityMode: s.mode, securityPolicy: s.policy });
    if (s.bufferEncryption) encryptBuffer(configFile, path.join(dir, "secrets"));

    for (let i = 0; i < options.cpuHogs; i++) children.push(spawn(process.execPath, ["-e", "for (;;) {}"], { stdio: "ignore" }));
    const alone = s.ceiling === "before" ? await measureBareAlone(s, endpointUrl, barePkiDir, children) : null;
    if (alone) {
      process.stderr.write(`bench: bare client alone ${JSON.stringify(alone)}\n`);
      // The server frees the bare client's 100,000 monitored items after it left: not on the connector's time.
      await sleep(5000);
    }

    // The cloud side: per item, latency from source timestamp to storage, and counts per source second.
    const latency = new LatencyHistogram();
    let latencyWindow = { start: Infinity, end: -Infinity };
    const cloudBuckets: Record<number, number> = {};
    let firstAckAt = 0;
    devcloud.store.onBatch((b) => {
      // a resent batch the cloud recognised (its answer was lost): stored once, counted once
      if (b.duplicate) return;
      const now = Date.now();
      firstAckAt ||= now;
      let lastT = "";
      let t = NaN;
      let sec = NaN;
      for (const m of b.messages) {
        if (m.kind !== "data") continue;
        for (const item of m.items) {
          if (!item.key.startsWith("load.")) continue;
          // the harness shares the cores with what it measures: parse each distinct timestamp once
          if (item.t !== lastT) {
            lastT = item.t;
            t = Date.parse(item.t);
            sec = Math.floor(t / 1000);
          }
          if (sec >= latencyWindow.start && sec < latencyWindow.end) latency.add(now - t);
          cloudBuckets[sec] = (cloudBuckets[sec] ?? 0) + 1;
        }
      }
    });

    const bare = alone ? null : startBare(s, endpointUrl, barePkiDir);
    if (bare) {
      children.push(bare.child);
      await bare.ready;
    }

    const spawnedAt = Date.now();
    // Started through its shebang line, as `npx kerf run` starts it (with its V8 flags).
    const connectorLog = path.join(dir, "connector.log");
    const command = [path.join(repo, "bin/kerf.js"), "run", "--config", configFile, "--state-dir", connectorStateDir];
    // A slow disk (an edge PC's eMMC or SD card): strace delays every fsync of the connector.
    const delayUs = options.fsyncDelayMs * 1000;
    if (delayUs > 0) command.unshift("strace", "-f", "-qq", "--seccomp-bpf", "-o", "/dev/null", "-e", "trace=fsync,fdatasync", "-e", `inject=fsync,fdatasync:delay_exit=${delayUs}`, "--");
    const connector = spawn(command[0]!, command.slice(1), {
      stdio: ["ignore", openSync(connectorLog, "w"), "inherit"],
      env: { ...process.env, ...(options["node-options"] ? { NODE_OPTIONS: options["node-options"] } : {}) },
    });
    children.push(connector);
    // Under strace the connector is strace's child: signals and /proc figures go to it.
    pid = connector.pid!;
    if (delayUs > 0) {
      for (let child = ""; !child; await sleep(20)) child = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim();
      pid = Number(readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(" ")[0]);
    }
    while (!firstAckAt) await sleep(20);
    const coldStartMs = firstAckAt - spawnedAt;
    // Every item subscribed and its value in the cloud at least once (the load keys plus the machine's own).
    const store = devcloud.store as MemoryStore;
    let everyItemSeenMs = NaN;
    const seenTimer = setInterval(() => {
      if (Number.isNaN(everyItemSeenMs) && store.keyCount(DEMO_MACHINE) >= s.nodes) everyItemSeenMs = Date.now() - spawnedAt;
    }, 100);
    // Let subscription creation finish (large scenarios) before the window opens.
    let subscribedMs = NaN;
    for (;;) {
      await sleep(1000);
      const secNow = Math.floor(Date.now() / 1000) - 2;
      if ((cloudBuckets[secNow] ?? 0) >= s.nodes * (1000 / s.periodMs) * 0.9) {
        subscribedMs = Date.now() - spawnedAt;
        break;
      }
      if (Date.now() - spawnedAt > 120_000) break;
    }

    const rssAtWindowStart = procStats(pid).peakRssMb;
    process.stderr.write(`bench: peak RSS before the window ${rssAtWindowStart} MB\n`);
    const cpuBefore = procStats(pid);
    const ours = () => [...new Set([pid, ...children.map((c) => c.pid!)])];
    const machineBefore = machineCpu(ours());
    const windowStart = Math.ceil(Date.now() / 1000) + 1;
    const windowEnd = windowStart + s.seconds;
    latencyWindow = { start: windowStart, end: windowEnd };
    bare?.window(windowStart, windowEnd);
    // The connector's health report: its memory, backlog, and where values spent their time (per 10 s).
    const stageReports = new Map<string, Record<string, { p50Ms: number; p99Ms: number; maxMs: number }>>();
    let maxBacklogItems = 0;
    const readHealth = () => {
      try {
        const h = JSON.parse(readFileSync(path.join(connectorStateDir, "health.json"), "utf8")) as HealthReport;
        maxBacklogItems = Math.max(maxBacklogItems, h.buffer.items);
        if (h.stages && Date.parse(h.at) > windowStart * 1000 && !stageReports.has(h.at)) stageReports.set(h.at, h.stages);
        return h;
      } catch {
        return null; // not written yet
      }
    };
    const memTimer = setInterval(() => {
      const h = readHealth();
      if (h) process.stderr.write(`bench: connector memory ${JSON.stringify(h.memory)} buffer ${JSON.stringify(h.buffer)} stages ${JSON.stringify(h.stages)}\n`);
    }, 5_000);
    await sleep(windowEnd * 1000 - Date.now());
    clearInterval(memTimer);
    const cpuAfter = procStats(pid);
    const machineAfter = machineCpu(ours());
    // Give the pipeline time to deliver what was published inside the window.
    await sleep(3000);
    readHealth();

    const barePeakRssMb = bare ? procStats(bare.child.pid!).peakRssMb : 0;
    const beside = bare ? await bare.finish() : null;
    const ceiling = alone ?? (beside && { delivered: sumWindow(beside.buckets, windowStart, windowEnd), latency: beside.latency, everyItemSeenMs: beside.everyItemSeenMs, peakRssMb: barePeakRssMb, cpuPercent: null, othersCpuPercent: null });
    const delivered = sumWindow(cloudBuckets, windowStart, windowEnd);
    const offered = s.nodes * s.seconds * (1000 / s.periodMs);
    // What is still buffered or being retried arrives later: wait for the whole window before counting gaps.
    const complete = ceiling?.delivered ?? offered;
    let windowCompleteAfterMs: number | null = null;
    for (const until = Date.now() + 60_000; Date.now() < until; await sleep(250)) {
      if (sumWindow(cloudBuckets, windowStart, windowEnd) >= complete) {
        windowCompleteAfterMs = Date.now() - windowEnd * 1000;
        break;
      }
    }

    // Loss and duplicates, counter by counter, over the values of the window that the cloud has.
    let gaps = 0;
    let duplicates = 0;
    const inWindow = (t: string) => {
      const sec = Math.floor(Date.parse(t) / 1000);
      return sec >= windowStart && sec < windowEnd;
    };
    for (const key of sampled) {
      const vals = devcloud.store
        .items(DEMO_MACHINE, key)
        .filter((x) => inWindow(x.t))
        .map((x) => Number(x.v))
        .sort((a, b) => a - b);
      for (let j = 1; j < vals.length; j++) {
        const d = vals[j]! - vals[j - 1]!;
        if (d === 0) duplicates++;
        else if (d > 1) gaps += d - 1;
      }
    }
    clearInterval(seenTimer);
    process.kill(pid, "SIGTERM");
    await new Promise((r) => connector.once("exit", r));
    // What the connector complained about (level warn and up), once per message.
    const complaints = new Map<string, number>();
    for (const line of readFileSync(connectorLog, "utf8").split("\n")) {
      if (!line) continue;
      let msg = line;
      try {
        msg = (JSON.parse(line) as { msg?: string }).msg ?? line;
      } catch {
        // not a pino line: count it as it is
      }
      complaints.set(msg, (complaints.get(msg) ?? 0) + 1);
    }
    for (const [msg, n] of complaints) process.stderr.write(`bench: connector logged ${n}× ${msg}\n`);
    const tail = latency.summary();
    return {
      scenario: s.name,
      nodes: s.nodes,
      periodMs: s.periodMs,
      security: `${s.mode}/${s.policy}`,
      serverNotificationsPerPublish: s.perPublish ?? 1000,
      cloudFaults: faultCounts(devcloud.faults),
      // the connector's buffer backlog, largest seen in its health reports during the window
      maxBacklogItems,
      windowSeconds: s.seconds,
      ceilingMeasured: s.ceiling === "before" ? "alone, before the connector" : "beside the connector",
      offeredPerSec: Math.round(offered / s.seconds),
      deliveredPerSec: Math.round(delivered / s.seconds),
      ceilingPerSec: ceiling ? Math.round(ceiling.delivered / s.seconds) : null,
      ratioToCeiling: ceiling ? round3(delivered / Math.max(1, ceiling.delivered)) : null,
      ratioToOffered: round3(delivered / offered),
      // after the window's values had all arrived (or 60 s): values missing between two that came
      lostInSampledCounters: gaps,
      windowCompleteAfterMs,
      sampledCounters: sampled.size,
      // a value seen twice in a sampled counter (whatever its timestamp); whole batches sent twice are counted apart
      duplicates,
      duplicateBatches: devcloud.store.counts().duplicateBatches,
      latencyP50Ms: tail.p50Ms,
      latencyP99Ms: tail.p99Ms,
      latencyMaxMs: tail.maxMs,
      ceilingLatencyP50Ms: ceiling?.latency.p50Ms ?? null,
      ceilingLatencyP99Ms: ceiling?.latency.p99Ms ?? null,
      ceilingLatencyMaxMs: ceiling?.latency.maxMs ?? null,
      p99OverCeilingMs: ceiling ? tail.p99Ms - ceiling.latency.p99Ms : null,
      // per stage, the worst 10-second p99 in the window: where the tail comes from
      stageP99Ms: worstStages(stageReports),
      connectorPeakRssMb: cpuAfter.peakRssMb,
      ceilingPeakRssMb: ceiling?.peakRssMb ?? null,
      rssRatioToCeiling: ceiling ? round3(cpuAfter.peakRssMb / ceiling.peakRssMb) : null,
      bufferEncryption: s.bufferEncryption ? "aes-256-gcm" : "off",
      connectorCpuPercent: Math.round(((cpuAfter.cpuSeconds - cpuBefore.cpuSeconds) / s.seconds) * 1000) / 10,
      // the connector's CPU time per value delivered from the window, microseconds
      connectorCpuUsPerValue: Math.round(((cpuAfter.cpuSeconds - cpuBefore.cpuSeconds) / Math.max(1, delivered)) * 1e7) / 10,
      tokenTtlSeconds: s.tokenTtlSeconds ?? null,
      // tokens issued after the first, and ingest requests the cloud refused as unauthorized
      tokenRenewals: s.tokenTtlSeconds ? Math.max(0, devcloud.auth.counts.tokensIssued - 1) : null,
      unauthorizedRequests: devcloud.tokens.refused,
      // CPU of processes that are not the bench's during the connector's window (another job on the machine skews a run)
      othersCpuPercent: Math.round(((machineAfter.all - machineBefore.all - (machineAfter.ours - machineBefore.ours)) / s.seconds) * 1000) / 10,
      ceilingCpuPercent: ceiling?.cpuPercent ?? null,
      ceilingOthersCpuPercent: alone?.othersCpuPercent ?? null,
      coldStartToFirstAckMs: coldStartMs,
      everyItemSeenMs,
      ceilingEveryItemSeenMs: ceiling?.everyItemSeenMs ?? null,
      everyItemSeenRatio: ceiling?.everyItemSeenMs ? round3(everyItemSeenMs / ceiling.everyItemSeenMs) : null,
      allSubscribedMs: subscribedMs,
    };
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    if (pid) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    await devcloud.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

const results = [];
for (const s of scenarios()) {
  process.stderr.write(`bench: ${s.name}, ${s.mode}/${s.policy}, ${s.seconds} s window…\n`);
  results.push(await runScenario(s));
}
const columns = Object.keys(results[0]!) as (keyof (typeof results)[number])[];
const width = Math.max(...columns.map((c) => c.length));
const cell = (x: unknown) => (typeof x === "object" && x !== null ? JSON.stringify(x) : String(x));
for (const c of columns) process.stdout.write(`${c.padEnd(width)}  ${results.map((r) => cell(r[c]).padStart(14)).join("  ")}\n`);
for (const r of results) process.stdout.write(JSON.stringify(r) + "\n");
process.exit(0);
