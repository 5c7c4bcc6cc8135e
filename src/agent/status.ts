import { judgeReport, type HealthReport, type HealthStatus, type HealthVerdict } from "./health.ts";
import type { Problem } from "./part.ts";

/** What `kerf status --json` prints (and GET /status serves): the health report, summed up for a person or a script. */
export interface StatusSummary {
  status: HealthStatus;
  reason: string;
  version: string | null;
  instance: string | null;
  state: string;
  /** When the connector wrote the report this summary reads, and its age in seconds. */
  reportedAt: string;
  reportAgeS: number;
  machines: { machine: string; state: string; security: string | null; items: number | null; lastValueAgeS: number | null; reconnects: number | null; lastError: string | null }[];
  uplink: { lastAckAgeS: number | null; consecutiveFailures: number; lastError: string | null } | null;
  buffer: { items: number; bytes: number; oldestAgeS: number | null; droppedItems: number; dropped: Record<string, number> | null };
  identity: { instanceId: string | null; notAfter: string; daysToExpiry: number; renewals: number | null; lastRenewalError: string | null } | null;
  tokens: { expiresAt: string | null; renewals: number; lastError: string | null; nextRenewalAt?: string | null } | null;
  update: {
    state: string;
    lastCheckAt: string | null;
    lastOutcome: string | null;
    nextCheckAt: string | null;
    available: string | null;
    /** The launcher's last install outcome (pointer.json) as reported upstream. */
    lastInstall: string | null;
  } | null;
  /** The command channel (with a commands section): last answered poll, failures, counts, the last command. */
  commands: { lastPollAgeS: number | null; consecutiveFailures: number; lastError: string | null; accepted: number; refused: number; lastCommand: string | null } | null;
  metrics: { file: string; endpoint: string | null } | null;
  problems: Problem[];
  warnings: Problem[];
}

const DAY_MS = 86_400_000;

/** `verdict` defaults to judging the report in this process (the endpoint's case: its writer is alive). */
export function statusSummary(report: HealthReport, now = Date.now(), verdict: HealthVerdict = judgeReport(report, now, () => true)): StatusSummary {
  const age = (t: number | null | undefined) => (t === null || t === undefined ? null : Math.max(0, Math.round((now - t) / 100) / 10));
  const cert = report.certificate ?? null;
  const identity = report.identity ?? (cert ? { instanceId: cert.instanceId, notAfter: cert.notAfter } : null);
  const u = report.update;
  const lastInstall = u?.reported ? `${u.reported.version} ${u.reported.kind}${u.reported.reason ? `: ${u.reported.reason}` : ""}` : null;
  return {
    status: verdict.status,
    reason: verdict.reason,
    version: report.version ?? null,
    instance: report.instance ?? null,
    state: report.state,
    reportedAt: report.at,
    reportAgeS: age(Date.parse(report.at)) ?? 0,
    machines: report.sessions.map((s) => ({
      machine: s.machine,
      state: s.state,
      security: s.security ? `${s.security.mode} ${s.security.policy}` : null,
      items: s.items ?? null,
      lastValueAgeS: age(s.lastDataAt),
      reconnects: s.connects === undefined ? null : Math.max(0, s.connects - 1),
      lastError: s.lastError,
    })),
    uplink: report.uplink && { lastAckAgeS: age(report.uplink.lastAckAt), consecutiveFailures: report.uplink.consecutiveFailures, lastError: report.uplink.lastError },
    buffer: { items: report.buffer.items, bytes: report.buffer.bytes, oldestAgeS: age(report.buffer.oldestCreatedAt), droppedItems: report.buffer.droppedItems, dropped: report.buffer.dropped ?? null },
    identity: identity && {
      instanceId: identity.instanceId,
      notAfter: identity.notAfter,
      daysToExpiry: Math.round(((Date.parse(identity.notAfter) - now) / DAY_MS) * 10) / 10,
      renewals: cert?.renewals ?? null,
      lastRenewalError: cert?.lastRenewalError ?? null,
    },
    tokens: report.tokens ?? null,
    update: u
      ? {
          state: u.state,
          lastCheckAt: u.lastCheckAt,
          lastOutcome: u.lastOutcome ? `${u.lastOutcome.outcome}${u.lastOutcome.version ? ` ${u.lastOutcome.version}` : ""}${u.lastOutcome.reason ? `: ${u.lastOutcome.reason}` : ""}` : null,
          nextCheckAt: u.nextCheckAt,
          available: u.available,
          lastInstall,
        }
      : null,
    commands: report.commands
      ? {
          lastPollAgeS: age(report.commands.polling.lastPollAt),
          consecutiveFailures: report.commands.polling.consecutiveFailures,
          lastError: report.commands.polling.lastError,
          accepted: report.commands.accepted,
          refused: report.commands.refused,
          lastCommand: report.commands.lastCommand ? `${report.commands.lastCommand.action} ${report.commands.lastCommand.state} at ${report.commands.lastCommand.at}` : null,
        }
      : null,
    metrics: report.metrics ?? null,
    problems: report.problems ?? [],
    warnings: report.warnings ?? [],
  };
}

/** The summary as lines for a person. */
export function formatStatus(s: StatusSummary): string {
  const lines: string[] = [];
  const secs = (n: number | null) => (n === null ? "never" : n < 120 ? `${n} s ago` : n < 7200 ? `${Math.round(n / 60)} min ago` : `${Math.round(n / 360) / 10} h ago`);
  lines.push(`kerf ${s.version ?? "(unknown version)"}  instance ${s.instance ?? "?"}  ${s.status}: ${s.reason}`);
  lines.push(`  report    ${s.state}, written ${secs(s.reportAgeS)}`);
  for (const m of s.machines) {
    const items = m.items === null ? "" : `, ${m.items} items`;
    const err = m.lastError && m.state !== "connected" ? `; last error: ${m.lastError}` : "";
    lines.push(`  machine   ${m.machine}: ${m.state}, ${m.security ?? "security not negotiated yet"}${items}, last value ${secs(m.lastValueAgeS)}${m.reconnects ? `, ${m.reconnects} reconnects` : ""}${err}`);
  }
  if (s.uplink) {
    const err = s.uplink.consecutiveFailures > 0 ? `, ${s.uplink.consecutiveFailures} failures in a row${s.uplink.lastError ? ` (${s.uplink.lastError})` : ""}` : "";
    lines.push(`  uplink    last acknowledgement ${secs(s.uplink.lastAckAgeS)}${err}`);
  } else lines.push("  uplink    not started");
  const b = s.buffer;
  const dropped = b.dropped ? Object.entries(b.dropped).filter(([, n]) => n > 0).map(([r, n]) => `${r} ${n}`).join(", ") : "";
  lines.push(`  buffer    ${b.items} values, ${b.bytes} bytes, oldest ${b.oldestAgeS === null ? "none" : secs(b.oldestAgeS).replace(" ago", " old")}; dropped ${b.droppedItems}${dropped ? ` (${dropped})` : ""}`);
  if (s.identity) {
    const i = s.identity;
    lines.push(`  identity  ${i.instanceId ?? "(identity files)"}, certificate expires ${i.notAfter} (${i.daysToExpiry} days)${i.lastRenewalError ? `; last renewal error: ${i.lastRenewalError}` : ""}`);
  }
  if (s.tokens) {
    const t = s.tokens;
    lines.push(`  tokens    ${t.renewals} renewed, current expires ${t.expiresAt ?? "(none yet)"}, next renewal ${t.nextRenewalAt ?? "not scheduled"}${t.lastError ? `; last error: ${t.lastError}` : ""}`);
  }
  if (s.update) {
    const u = s.update;
    lines.push(`  update    ${u.state}, last check ${u.lastCheckAt ?? "never"}${u.lastOutcome ? ` (${u.lastOutcome})` : ""}, next ${u.nextCheckAt ?? "not scheduled"}${u.available ? `, ${u.available} available` : ""}`);
    if (u.lastInstall) lines.push(`            last install: ${u.lastInstall}`);
  } else lines.push("  update    off");
  if (s.commands) {
    const c = s.commands;
    const err = c.consecutiveFailures > 0 ? `, ${c.consecutiveFailures} failures in a row${c.lastError ? ` (${c.lastError})` : ""}` : "";
    lines.push(`  commands  last poll ${secs(c.lastPollAgeS)}${err}; ${c.accepted} accepted, ${c.refused} refused${c.lastCommand ? `; last: ${c.lastCommand}` : ""}`);
  } else lines.push("  commands  off");
  if (s.metrics) lines.push(`  metrics   ${s.metrics.file}${s.metrics.endpoint ? `, ${s.metrics.endpoint}` : ""}`);
  for (const p of s.problems) lines.push(`  PROBLEM   ${p.part}: ${p.reason}${p.code ? ` (code ${p.code})` : ""}`);
  for (const w of s.warnings) lines.push(`  warning   ${w.part}: ${w.reason}${w.code ? ` (code ${w.code})` : ""}`);
  return `${lines.join("\n")}\n`;
}
