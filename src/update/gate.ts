import { judgeHealth } from "../agent/health.ts";

export interface TrialChild {
  pid: number;
  /** Epoch ms at which the launcher started it. */
  startedAt: number;
}

export interface GateVerdict {
  ready: boolean;
  /** What is still missing (the rollback reason when the deadline passes). */
  reason: string;
}

/**
 * Whether a version on trial works, read from the health report it writes in the state folder
 * (the same file `kerf health` reads; the agent writes it every second during its first
 * minute): the report is this child's and fresh, so the config loaded and the buffer opened;
 * no part reports a problem, so every machine is connected or retrying on purpose and the
 * uplink is not failing; and the cloud has acknowledged a batch that this child sent.
 * A child that hangs stops writing: its report goes stale or never appears, and the deadline
 * rolls it back.
 */
export function judgeTrial(stateDir: string, child: TrialChild, now = Date.now()): GateVerdict {
  const verdict = judgeHealth(stateDir, now);
  const report = verdict.report;
  if (!report || report.pid !== child.pid || Date.parse(report.at) < child.startedAt) return { ready: false, reason: "it wrote no health report (config, buffer and parts not started)" };
  if (!verdict.healthy) return { ready: false, reason: `it is ${verdict.status}: ${verdict.reason}` };
  const ackAt = report.uplink?.lastAckAt ?? null;
  if (report.uplink === null) return { ready: false, reason: "it has no uplink" };
  if (ackAt === null || ackAt < child.startedAt) return { ready: false, reason: `the cloud acknowledged no batch from it${report.uplink.lastError ? ` (last uplink error: ${report.uplink.lastError})` : ""}` };
  return { ready: true, reason: "healthy, and the cloud acknowledged a batch" };
}
