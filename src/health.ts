import { readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";

/**
 * Health goes through a file in the state folder, not an HTTP port: the connector
 * listens on nothing. The agent rewrites it every HEALTH_INTERVAL_MS; a file that has
 * gone stale means the agent's loops are no longer making progress.
 */
export const HEALTH_INTERVAL_MS = 10_000;
const FILE = "health.json";

export interface HealthReport {
  at: string;
  pid: number;
  sessions: { machine: string; state: string; lastError: string | null; lastDataAt: number | null }[];
  uplink: { lastAckAt: number | null; consecutiveFailures: number; lastError: string | null } | null;
  buffer: { items: number; bytes: number; droppedItems: number };
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

export function judgeHealth(stateDir: string, now = Date.now()): { healthy: boolean; reason: string; report?: HealthReport } {
  let report: HealthReport;
  try {
    report = JSON.parse(readFileSync(path.join(stateDir, FILE), "utf8")) as HealthReport;
  } catch {
    return { healthy: false, reason: `no health report in ${stateDir} (is the connector running with this --state-dir?)` };
  }
  const age = now - Date.parse(report.at);
  if (!(age <= 3 * HEALTH_INTERVAL_MS)) return { healthy: false, reason: `health report is ${Math.round(age / 1000)} s old: the agent is stuck`, report };
  return { healthy: true, reason: "ok", report };
}
