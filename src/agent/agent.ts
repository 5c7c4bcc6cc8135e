import { mkdirSync } from "node:fs";
import type { BufferStats, DurableBuffer } from "../buffer/buffer.ts";
import type { Enroller } from "../certs/identity.ts";
import type { CertificateRenewal } from "../certs/renewal.ts";
import type { LoadedConfig } from "../config/load.ts";
import type { Logger } from "../log.ts";
import type { MachineSession } from "../opcua/session/session.ts";
import { processGuardStats } from "../process-guard.ts";
import type { Sender, SenderStats } from "../uplink/sender.ts";
import type { TokenHealth } from "../uplink/tokens.ts";
import { BufferPart } from "./buffer-part.ts";
import { HEALTH_INTERVAL_MS, memorySnapshot, processIdentity, writeHealth, type AgentState, type HealthReport, type ProcessIdentity } from "./health.ts";
import { CommandsPart } from "./commands-part.ts";
import { MachinesPart } from "./machines-part.ts";
import type { Part, Problem } from "./part.ts";
import { UplinkPart } from "./uplink-part.ts";
import { LatestValues } from "./latest-values.ts";
import { UpdatePart, type UpdateHealth } from "./update-part.ts";
import { MetricsPart } from "./metrics-part.ts";
import type { MetricsSnapshot } from "../metrics/metrics.ts";
import { statusSummary } from "./status.ts";
import { pinsInEffect } from "../update/signed-pins.ts";
import { appVersion } from "../update/version.ts";

/**
 * A stop ends within this, whatever hangs (a server or cloud that accepts and never answers, a
 * subscribe of 100,000 items): a container runtime sends SIGKILL 10 s after SIGTERM.
 */
export const STOP_DEADLINE_MS = 8_000;

/** How long after start the agent reports its health every second. */
const FAST_HEALTH_MS = 60_000;

export interface AgentOptions {
  loaded: LoadedConfig;
  stateDir: string;
  logger: Logger;
  /** Issues the instance certificate when there is none yet (the enrolment seam). */
  enroller?: Enroller;
  /** Ends the process for a remote `restart` command (kerf run passes its stop request). */
  requestStop?: (reason: string) => void;
}

/**
 * The composition root: a list of parts started in order (buffer, uplink, machines), so that
 * nothing the machines send has nowhere to go, and stopped in reverse.
 */
export class Agent {
  readonly #o: AgentOptions;
  readonly #log: Logger;
  readonly #buffer: BufferPart;
  readonly #uplink: UplinkPart;
  readonly #machines: MachinesPart;
  readonly #update: UpdatePart;
  readonly #metrics: MetricsPart;
  readonly #commands: CommandsPart;
  readonly #parts: readonly Part[];
  #started: Part[] = [];
  #healthTimer: NodeJS.Timeout | null = null;
  #state: AgentState = "running";
  #stopped: Promise<{ buffer: BufferStats; uplink: SenderStats | null; tokens: TokenHealth | null }> | null = null;
  readonly #process: ProcessIdentity = processIdentity();

  constructor(options: AgentOptions) {
    this.#o = options;
    this.#log = options.logger;
    const { loaded, stateDir, logger } = options;
    const { config } = loaded;
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    this.#buffer = new BufferPart({
      stateDir,
      maxBytes: config.buffer.maxBytes,
      maxItems: config.cloud.batch.maxItems,
      logger: logger.child({ component: "buffer" }),
      onCommit: () => this.#uplink.sender?.wake(),
      ...(loaded.secrets.bufferKey && config.buffer.encryption ? { encryption: { key: loaded.secrets.bufferKey, keyFile: config.buffer.encryption.keyFile } } : {}),
    });
    // A signed pin set from the update channel replaces cloud.pins (src/update/signed-pins.ts).
    const pins = pinsInEffect(config, stateDir);
    this.#uplink = new UplinkPart({
      loaded,
      stateDir,
      logger,
      enroller: options.enroller,
      store: this.#buffer.buffer,
      backlog: () => this.#buffer.stats().items,
      pins: pins.pins,
    });
    // The update lock may watch machine values: those keys are seen on their way to the buffer.
    const latest = new LatestValues(config.update?.lock?.values ?? []);
    const sink = this.#buffer.sink;
    this.#machines = new MachinesPart({
      loaded,
      stateDir,
      logger,
      sink: latest.empty ? sink : { write: (m) => (latest.observe(m), sink.write(m)), commit: () => sink.commit() },
      lastDelivered: (machine, keys) => this.#buffer.buffer.lastDelivered(machine, keys),
    });
    this.#update = new UpdatePart({
      loaded,
      stateDir,
      logger,
      uplink: this.#uplink,
      sink,
      latest: (machine, key) => latest.get(machine, key),
      runningVersion: appVersion(),
      underLauncher: process.env.KERF_LAUNCHER === "1",
      pins,
    });
    this.#commands = new CommandsPart({
      loaded,
      stateDir,
      logger,
      uplink: this.#uplink,
      machines: this.#machines,
      status: () => this.health(),
      requestStop: options.requestStop,
      checkUpdate: config.update ? () => this.#update.checkNow() : undefined,
    });
    this.#metrics = new MetricsPart({
      stateDir,
      status: config.status,
      instance: config.instance,
      logger: logger.child({ component: "metrics" }),
      snapshot: () => this.#metricsSnapshot(),
      summary: () => statusSummary(this.#report(new Date().toISOString(), { stages: false })),
      sender: () => this.#uplink.sender,
    });
    // metrics last: they listen to the sender, which exists once the uplink started
    this.#parts = [this.#buffer, this.#uplink, this.#machines, this.#update, this.#commands, this.#metrics];
  }

  get buffer(): DurableBuffer {
    return this.#buffer.buffer;
  }

  get sender(): Sender | null {
    return this.#uplink.sender;
  }

  /** Renewals of the instance certificate (with cloud.enrolment), else null. */
  get renewal(): CertificateRenewal | null {
    return this.#uplink.renewal;
  }

  /** Remote commands: their audit log (null without a commands section). */
  get commands(): CommandsPart {
    return this.#commands;
  }

  get sessions(): readonly MachineSession[] {
    return this.#machines.sessions;
  }

  /** Self-update: checkNow() for "check now" (kerf update check runs its own, under the same lock). */
  get update(): UpdatePart {
    return this.#update;
  }

  async start(): Promise<void> {
    for (const part of this.#parts) {
      this.#started.push(part);
      await part.start();
    }
    this.#writeHealth();
    // Every second during the first minute: the launcher's health gate waits for a report that
    // shows the first acknowledged batch, and should not wait a whole interval for it.
    const started = Date.now();
    this.#healthTimer = setInterval(() => {
      if (Date.now() - started < FAST_HEALTH_MS) this.#writeHealth();
    }, 1_000);
    this.#healthTimer.unref();
    setTimeout(() => {
      if (this.#state !== "running" || this.#healthTimer === null) return;
      clearInterval(this.#healthTimer);
      this.#healthTimer = setInterval(() => this.#writeHealth(), HEALTH_INTERVAL_MS);
      this.#healthTimer.unref();
    }, FAST_HEALTH_MS).unref();
  }

  #writeHealth(): void {
    try {
      writeHealth(this.#o.stateDir, this.#report(new Date().toISOString()));
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, "cannot write the health report");
    }
  }

  /** The Prometheus metrics' view of the parts: the same sources as the health report. */
  #metricsSnapshot(now = Date.now()): MetricsSnapshot {
    const h = this.health(now);
    const b = h.buffer;
    const u = h.uplink;
    const stats = this.sender?.stats();
    return {
      version: appVersion(),
      received: h.received,
      buffer: { appendedItems: b.appendedItems, ackedItems: b.ackedItems, dropped: b.dropped, items: b.items, bytes: b.bytes, oldestCreatedAt: b.oldestCreatedAt },
      uplink: u && { sentItems: stats?.sentItems ?? 0, consecutiveFailures: u.consecutiveFailures, lastAckAt: u.lastAckAt },
      machines: h.sessions.map((s) => ({ machine: s.machine, state: s.state, connects: s.connects })),
      certificateNotAfter: h.identity ? Date.parse(h.identity.notAfter) : null,
      tokenRenewals: h.tokens?.renewals ?? null,
      update: h.update && { state: h.update.state, consecutiveFailures: h.update.consecutiveFailures },
      commands: h.commands && { accepted: h.commands.accepted, refused: h.commands.refused, consecutiveFailures: h.commands.polling.consecutiveFailures },
      problems: h.problems.length,
    };
  }

  /**
   * The health report of now; `kerf health` and `kerf status` read it from the state directory.
   * `stages` takes the stage times collected since the last report (only the file's report does).
   */
  #report(at: string, options: { stages: boolean } = { stages: true }): HealthReport {
    const { problems, warnings, sessions, uplink, tokens, certificate, identity, buffer, writer, opcuaCertificate, update, commands, metrics } = this.health();
    return {
      at,
      pid: process.pid,
      process: this.#process,
      state: this.#state,
      ...(this.#state === "stopped" ? { stopped: true, stoppedAt: at } : {}),
      version: appVersion(),
      instance: this.#o.loaded.config.instance,
      problems,
      ...(warnings.length > 0 ? { warnings } : {}),
      ...(opcuaCertificate ? { opcuaCertificate } : {}),
      sessions: sessions.map((s) => ({
        machine: s.machine,
        state: s.state,
        lastError: s.lastError,
        ...(s.lastErrorCode ? { lastErrorCode: s.lastErrorCode } : {}),
        lastDataAt: s.lastDataAt,
        security: s.security,
        items: s.items,
        connects: s.connects,
        ...(s.credentialsRejected ? { credentialsRejected: true } : {}),
        ...(Object.keys(s.undecodable).length > 0 ? { undecodable: s.undecodable } : {}),
        ...(Object.keys(s.groupDataAt).length > 0 ? { groupDataAt: s.groupDataAt } : {}),
      })),
      uplink: uplink && { lastAckAt: uplink.lastAckAt, consecutiveFailures: uplink.consecutiveFailures, lastError: uplink.lastError, lastErrorCode: uplink.lastErrorCode },
      ...(identity ? { identity } : {}),
      ...(certificate ? { certificate } : {}),
      ...(tokens ? { tokens: { expiresAt: iso(tokens.expiresAt), renewals: tokens.renewals, lastError: tokens.lastError, nextRenewalAt: iso(tokens.nextRenewalAt) } } : {}),
      ...(update ? { update } : {}),
      buffer: { items: buffer.items, bytes: buffer.bytes, droppedItems: buffer.droppedItems, dropped: buffer.dropped, oldestCreatedAt: buffer.oldestCreatedAt, appendedItems: buffer.appendedItems, ackedItems: buffer.ackedItems },
      writer: { pendingItems: writer.pendingItems, failures: writer.failures, lastError: writer.lastError },
      ...(commands ? { commands } : {}),
      metrics: { file: metrics.file, endpoint: metrics.endpoint },
      unhandledRejections: processGuardStats().unhandledRejections,
      memory: memorySnapshot(),
      ...(options.stages ? { stages: { ...this.#buffer.takeStages(), ...this.sender?.takeStages() } } : {}),
    };
  }

  /**
   * Stops the parts in reverse order and returns the final counters (the buffer is closed afterwards).
   * Whatever hangs, it returns within `deadlineMs` (STOP_DEADLINE_MS): every step gets what is
   * left of it, requests in flight are aborted after a short grace and stay buffered, and the last
   * health report says "stopped". `drainMs` waits for the backlog to go out, within the deadline
   * and only while the cloud answers. Calling it again returns the same stop.
   */
  stop(options: { drainMs?: number; deadlineMs?: number } = {}): Promise<{ buffer: BufferStats; uplink: SenderStats | null; tokens: TokenHealth | null }> {
    this.#stopped ??= this.#stop(options);
    return this.#stopped;
  }

  async #stop(options: { drainMs?: number; deadlineMs?: number }): Promise<{ buffer: BufferStats; uplink: SenderStats | null; tokens: TokenHealth | null }> {
    const deadline = Date.now() + (options.deadlineMs ?? STOP_DEADLINE_MS);
    const budget = { left: (reserveMs = 0) => Math.max(0, deadline - reserveMs - Date.now()), drainMs: options.drainMs ?? 0 };
    if (this.#healthTimer) clearInterval(this.#healthTimer);
    this.#state = "stopping";
    this.#writeHealth();
    for (const part of [...this.#started].reverse()) {
      try {
        await part.stop(budget);
      } catch (err) {
        this.#log.warn({ part: part.name, err: (err as Error).message }, "a part did not stop cleanly");
      }
    }
    const final = { buffer: this.#buffer.stats(), uplink: this.sender?.stats() ?? null, tokens: this.#uplink.tokens?.health() ?? null };
    this.#state = "stopped";
    this.#writeHealth();
    return final;
  }

  /** Re-reads the mapping now (the file watcher does this on its own); false when it was refused. */
  reloadMapping(): Promise<boolean> {
    return this.#machines.reloadMapping();
  }

  /** Each part's own health, and what keeps any of them from making progress. */
  health(now = Date.now()) {
    // each part once: a report costs one round of session health and one read of the buffer's stats
    const buffer = this.#buffer.health();
    const machines = this.#machines.health(now);
    const uplink = this.#uplink.health(now);
    const update = this.#update.health(now);
    const commands = this.#commands.health(now);
    const metrics = this.#metrics.health();
    const problems: Problem[] = [...buffer.problems, ...uplink.problems, ...machines.problems, ...update.problems, ...commands.problems];
    const warnings: Problem[] = [
      ...(buffer.warnings ?? []),
      ...(uplink.warnings ?? []),
      ...(machines.warnings ?? []),
      ...(update.warnings ?? []),
      ...(commands.warnings ?? []),
      ...(metrics.warnings ?? []),
    ];
    const u: UpdateHealth | null = update.update;
    return {
      problems,
      warnings,
      sessions: machines.sessions,
      uplink: uplink.sender,
      tokens: uplink.tokens,
      certificate: uplink.certificate,
      identity: uplink.identity,
      buffer: buffer.stats,
      received: buffer.received,
      writer: buffer.writer,
      opcuaCertificate: machines.opcuaCertificate,
      update: u,
      commands: commands.commands,
      metrics,
    };
  }
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());
