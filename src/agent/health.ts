import { readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { AppCertificateStatus } from "../opcua/trust/app-cert.ts";
import type { CommandsHealth } from "./commands-part.ts";
import type { Problem } from "./part.ts";
import type { UpdateHealth } from "./update-part.ts";

/**
 * Health goes through a file in the state folder, not an HTTP port: the connector
 * listens on nothing. The agent rewrites it every HEALTH_INTERVAL_MS with each part's own
 * verdict (`problems`: a part whose loop makes no progress, see the README); a file that has
 * gone stale means the agent itself is stuck. A clean stop writes its final state; a process
 * that died without one is found through `process`.
 */
export const HEALTH_INTERVAL_MS = 10_000;
const FILE = "health.json";

/** Running, stopping (SIGTERM received), or stopped cleanly (the last report the process wrote). */
export type AgentState = "running" | "stopping" | "stopped";

/**
 * Which process wrote the report. A pid alone can name another process after a restart of the
 * container or the machine (pids are reused), so the process's start time (clock ticks after
 * boot, /proc/<pid>/stat field 22) and the kernel's boot id must match too, where Linux has them.
 */
export interface ProcessIdentity {
  pid: number;
  startTicks?: string;
  bootId?: string;
}

export interface HealthReport {
  at: string;
  pid: number;
  process: ProcessIdentity;
  state: AgentState;
  /** Set on the final report of a clean stop. */
  stopped?: true;
  stoppedAt?: string;
  /** The running app version and the instance (config `instance`); reports of older versions have neither. */
  version?: string;
  instance?: string;
  /** What keeps a part from making progress; empty while all do. Reports of older versions have none. */
  problems?: Problem[];
  /** What needs the operator soon without stopping progress (the verdict stays healthy), e.g. the OPC UA certificate near expiry. */
  warnings?: Problem[];
  /** The connector's OPC UA application certificate: thumbprint, expiry, days left, a staged renewal. */
  opcuaCertificate?: AppCertificateStatus;
  sessions: {
    machine: string;
    state: string;
    lastError: string | null;
    /** The code of the last error (src/errors.ts), when it had one. */
    lastErrorCode?: string;
    lastDataAt: number | null;
    /** The security of the last connection (what "best" chose), null before the first. */
    security?: { mode: string; policy: string } | null;
    /** Monitored items of the current or last connection. */
    items?: number;
    /** Connections since start; all but the first are reconnects. */
    connects?: number;
    /** The server refused the credentials: retried after minutes, or when the password file changes. */
    credentialsRejected?: boolean;
    /** By group: values that could not be decoded (each sent as null with a Bad status), and messages that could not be repaired (lost). */
    undecodable?: Record<string, { values: number; messages: number }>;
    /** When each group with a watchdog last had data. */
    groupDataAt?: Record<string, number>;
  }[];
  /** Remote commands (with a commands section): polling, counts, the last command and refusal. */
  commands?: CommandsHealth;
  uplink: { lastAckAt: number | null; consecutiveFailures: number; lastError: string | null; lastErrorCode?: string | null } | null;
  /** The instance certificate in service, also from identity files (without enrolment). */
  identity?: { instanceId: string | null; notAfter: string };
  /** The instance certificate (with cloud.enrolment): instance id, expiry, days left, renewals, the last renewal error. */
  certificate?: { instanceId: string; notAfter: string; daysToExpiry: number; expired: boolean; renewals: number; lastRenewalError: string | null; nextRenewalAt: string | null } | null;
  /** The access tokens (with cloud.auth): when the current one expires, renewals, the last failure (never the token). */
  tokens?: { expiresAt: string | null; renewals: number; lastError: string | null; nextRenewalAt?: string | null };
  /** Self-update (with an update section): the schedule, the last check and its outcome, what holds an available release, where the uplink pins come from. */
  update?: UpdateHealth;
  buffer: {
    items: number;
    bytes: number;
    droppedItems: number;
    /** Lifetime counts (kept across restarts): dropped by reason, appended, acknowledged; the oldest batch held (ms since the epoch). */
    dropped?: Record<string, number>;
    appendedItems?: number;
    ackedItems?: number;
    oldestCreatedAt?: number | null;
  };
  /** The Prometheus text file, and the endpoint of status.listen (null without one). */
  metrics?: { file: string; endpoint: string | null };
  /** Values waiting for their commit to the buffer, and commits failed in a row (a disk that refuses writes). */
  writer?: { pendingItems: number; failures: number; lastError: string | null };
  /** Promise rejections nothing handled (each a bug, logged at ERROR; the process went on). */
  unhandledRejections?: number;
  memory: { rssMb: number; heapUsedMb: number; heapTotalMb: number; externalMb: number; arrayBuffersMb: number };
  /**
   * Where values spent their time since the previous report: waiting for their commit to the
   * buffer, the commit (fsync), waiting in the buffer for a request, compressing, the request,
   * deleting the acknowledged batch.
   */
  stages?: Record<string, { count: number; p50Ms: number; p99Ms: number; maxMs: number }>;
}

export function memorySnapshot(): HealthReport["memory"] {
  const m = process.memoryUsage();
  const mb = (n: number) => Math.round(n / 1e5) / 10;
  return { rssMb: mb(m.rss), heapUsedMb: mb(m.heapUsed), heapTotalMb: mb(m.heapTotal), externalMb: mb(m.external), arrayBuffersMb: mb(m.arrayBuffers) };
}

export function writeHealth(stateDir: string, report: HealthReport): void {
  const file = path.join(stateDir, FILE);
  writeFileSync(file + ".tmp", JSON.stringify(report));
  renameSync(file + ".tmp", file);
}

/** This process, or `pid`, as /proc shows it; only the pid where there is no /proc. */
export function processIdentity(pid = process.pid): ProcessIdentity {
  const id: ProcessIdentity = { pid };
  const startTicks = readStartTicks(pid);
  if (startTicks !== undefined) id.startTicks = startTicks;
  const bootId = readText("/proc/sys/kernel/random/boot_id");
  if (bootId !== undefined) id.bootId = bootId;
  return id;
}

/**
 * Whether the process that wrote a report is still alive: the pid exists and is no zombie, and
 * its start time and boot id are those in the report (where both sides know them).
 */
export function isAlive(recorded: ProcessIdentity): boolean {
  if (!Number.isInteger(recorded.pid) || recorded.pid <= 0) return false;
  try {
    process.kill(recorded.pid, 0);
  } catch (err) {
    // EPERM: it exists but belongs to another user
    if ((err as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  const now = processIdentity(recorded.pid);
  if (recorded.bootId !== undefined && now.bootId !== undefined && recorded.bootId !== now.bootId) return false;
  if (recorded.startTicks !== undefined && now.startTicks !== recorded.startTicks) return false;
  return readState(recorded.pid) !== "Z";
}

export type HealthStatus = "healthy" | "unhealthy" | "not running";

export interface HealthVerdict {
  status: HealthStatus;
  healthy: boolean;
  reason: string;
  report?: HealthReport;
}

export function judgeHealth(stateDir: string, now = Date.now(), alive: (p: ProcessIdentity) => boolean = isAlive): HealthVerdict {
  let report: HealthReport;
  try {
    report = JSON.parse(readFileSync(path.join(stateDir, FILE), "utf8")) as HealthReport;
  } catch {
    return { status: "not running", healthy: false, reason: `no health report in ${stateDir} (is the connector running with this --state-dir?)` };
  }
  return judgeReport(report, now, alive);
}

/** The verdict on one report: its writer alive, the report fresh, no problem in it. */
export function judgeReport(report: HealthReport, now = Date.now(), alive: (p: ProcessIdentity) => boolean = isAlive): HealthVerdict {
  const verdict = (status: HealthStatus, reason: string): HealthVerdict => ({ status, healthy: status === "healthy", reason, report });
  if (report.stopped || report.state === "stopped") return verdict("not running", `the connector stopped at ${report.stoppedAt ?? report.at}`);
  // Reports of older versions carry only the pid.
  if (!alive(report.process ?? { pid: report.pid })) {
    return verdict("not running", `the connector (pid ${report.pid}) is not running; it did not stop cleanly (killed or crashed?) and last reported at ${report.at}`);
  }
  if (report.state === "stopping") return verdict("unhealthy", `the connector is stopping (since ${report.at})`);
  const age = now - Date.parse(report.at);
  if (!(age <= 3 * HEALTH_INTERVAL_MS)) return verdict("unhealthy", `health report is ${Math.round(age / 1000)} s old: the agent is stuck`);
  const problems = report.problems ?? [];
  if (problems.length > 0) return verdict("unhealthy", describe(problems));
  const warnings = report.warnings ?? [];
  return verdict("healthy", warnings.length > 0 ? `ok, with warnings: ${describe(warnings)}` : "ok");
}

function describe(problems: Problem[]): string {
  return problems.map((p) => `${p.part}: ${p.reason}${p.code ? ` (code ${p.code})` : ""}`).join("; ");
}

function readText(file: string): string | undefined {
  try {
    return readFileSync(file, "utf8").trim();
  } catch {
    return undefined;
  }
}

/** The fields of /proc/<pid>/stat after the command name, which may itself hold spaces and parentheses. */
function statFields(pid: number): string[] | undefined {
  const stat = readText(`/proc/${pid}/stat`);
  if (stat === undefined) return undefined;
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

function readStartTicks(pid: number): string | undefined {
  // field 22 (starttime); the fields after the name start at field 3
  return statFields(pid)?.[22 - 3];
}

function readState(pid: number): string | undefined {
  return statFields(pid)?.[0];
}
