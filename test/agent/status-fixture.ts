import type { HealthReport } from "../../src/agent/health.ts";
import { processIdentity } from "../../src/agent/health.ts";

/** A health report as the agent writes it: two machines, the uplink, identity, tokens, update, buffer. */
export const NOW = Date.parse("2026-12-06T12:00:00Z");

export function report(over: Partial<HealthReport> = {}): HealthReport {
  return {
    at: new Date(NOW - 2_000).toISOString(),
    pid: process.pid,
    process: processIdentity(),
    state: "running",
    version: "1.4.0",
    instance: "kerf-line1-saw",
    problems: [],
    sessions: [
      { machine: "saw-1", state: "connected", lastError: null, lastDataAt: NOW - 1_500, security: { mode: "SignAndEncrypt", policy: "Basic256Sha256" }, items: 42, connects: 3 },
      { machine: "edge-1", state: "reconnecting", lastError: "connect ECONNREFUSED 10.0.0.7:4840", lastDataAt: null, security: null, items: 0, connects: 1 },
    ],
    uplink: { lastAckAt: NOW - 4_000, consecutiveFailures: 0, lastError: null },
    identity: { instanceId: "inst-7f3a", notAfter: new Date(NOW + 20 * 86_400_000).toISOString() },
    certificate: { instanceId: "inst-7f3a", notAfter: new Date(NOW + 20 * 86_400_000).toISOString(), daysToExpiry: 20, expired: false, renewals: 2, lastRenewalError: null, nextRenewalAt: null },
    tokens: { expiresAt: new Date(NOW + 300_000).toISOString(), renewals: 9, lastError: null },
    update: {
      state: "idle",
      lastCheckAt: new Date(NOW - 3_600_000).toISOString(),
      lastOutcome: { outcome: "current", via: "origin" },
      nextCheckAt: new Date(NOW + 3_600_000).toISOString(),
      consecutiveFailures: 0,
      available: null,
      heldBy: null,
      underLauncher: true,
      pins: { source: "cloud.pins" },
      reported: { at: new Date(NOW - 86_400_000).toISOString(), kind: "committed", version: "1.4.0" },
    },
    buffer: { items: 120, bytes: 8_192, droppedItems: 5, dropped: { buffer_full: 5, rejected: 0, too_large: 0, tampered: 0 }, oldestCreatedAt: NOW - 30_000 },
    metrics: { file: "/var/lib/kerf/metrics.prom", endpoint: null },
    memory: { rssMb: 80, heapUsedMb: 30, heapTotalMb: 40, externalMb: 2, arrayBuffersMb: 1 },
    ...over,
  } as HealthReport;
}
