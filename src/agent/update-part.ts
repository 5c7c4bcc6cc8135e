import { existsSync, mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import type { Dispatcher } from "undici";
import { writeFileAtomic } from "../certs/files.ts";
import type { LoadedConfig } from "../config/load.ts";
import type { Logger } from "../log.ts";
import type { EventMessage, MessageSink } from "../message.ts";
import { runUpdateCheck, type CheckReport } from "../update/checker.ts";
import { writeInstallRequest, type UnpackedBundle } from "../update/install-request.ts";
import { readPointer, type Outcome } from "../update/pointer.ts";
import { describeWindow, lockHolder, staggerMs, windowOpen } from "../update/schedule.ts";
import { describePins, pinsInEffect, samePins, type PinsInEffect } from "../update/signed-pins.ts";
import { within, type Part, type PartHealth, type Problem, type StopBudget } from "./part.ts";

/** The machine name of the connector's own messages (machine ids start with a letter or digit, so it names none). */
export const CONNECTOR_MACHINE = "_kerf";

/** While an update waits for the window or the lock, they are looked at this often (cheap: a clock and a stat). */
const HOLD_RECHECK_MS = 5_000;
/** Another process (kerf update check) holds the check lock: try again after this. */
const BUSY_RETRY_MS = 60_000;
/** Failed checks in a row before health warns. */
const FAILURES_WARN = 2;
/** A check due longer ago than this has not started: the loop is stuck (a timer fires late only on a blocked event loop). */
export const CHECK_OVERDUE_MS = 60_000;
/** A check (refresh, download, unpack) running longer than this is stuck: each request has its own timeout. */
export const CHECK_STUCK_MS = 3_600_000;

export interface UpdatePartOptions {
  loaded: LoadedConfig;
  stateDir: string;
  logger: Logger;
  /** The uplink's pinned transport (null before the uplink started) and a fresh mirror transport. */
  uplink: { readonly transport: (Dispatcher & { pins: string[]; repin(pins: readonly string[]): void }) | null; mirrorTransport(): Dispatcher };
  sink: MessageSink & { commit(): void };
  /** A machine's latest value of a key, for update.lock.values. */
  latest: (machine: string, key: string) => unknown;
  runningVersion: string;
  /** kerf run runs under kerf launch (env KERF_LAUNCHER=1): only then is an install requested. */
  underLauncher: boolean;
  pins: PinsInEffect;
}

export interface UpdateHealth {
  state: "idle" | "checking" | "downloaded" | "held" | "requested";
  lastCheckAt: string | null;
  lastOutcome: { outcome: CheckReport["outcome"]; reason?: string; version?: string; via: CheckReport["via"] } | null;
  nextCheckAt: string | null;
  consecutiveFailures: number;
  /** A newer release downloaded and unpacked, not installed yet. */
  available: string | null;
  /** What keeps the available release from being requested. */
  heldBy: { window?: string; lock?: string; apply?: "manual"; launcher?: string; rolledBack?: string } | null;
  underLauncher: boolean;
  /** Why the update lock is held now (null: free; absent without update.lock): kerf update apply reads it. */
  lock?: string | null;
  pins: { source: PinsInEffect["source"]; release?: string; targetsVersion?: number; appliedAt?: string };
  /** The last update outcome of the launcher (pointer.json) that went upstream. */
  reported: Outcome | null;
}

export interface UpdatePartHealth extends PartHealth {
  update: UpdateHealth | null;
}

/**
 * Self-update, the agent's side: checks the signed channel on a staggered schedule, keeps the
 * signed pin set, unpacks a newer release and asks the launcher to install it when apply is
 * auto, the maintenance window is open and the update lock is free. It also reports the
 * launcher's last outcome upstream, once.
 */
export class UpdatePart implements Part<UpdatePartHealth> {
  readonly name = "update";
  readonly #o: UpdatePartOptions;
  readonly #log: Logger;
  #timer: NodeJS.Timeout | null = null;
  #holdTimer: NodeJS.Timeout | null = null;
  #running: Promise<CheckReport> | null = null;
  #runningSince: number | null = null;
  #started = false;
  #stopped = false;
  #pins: PinsInEffect;
  #pending: UnpackedBundle | null = null;
  #requested: string | null = null;
  #heldBy: UpdateHealth["heldBy"] = null;
  #heldSaid: string | null = null;
  #last: CheckReport | null = null;
  #failures = 0;
  #nextAt: number | null = null;
  #reported: Outcome | null = null;

  constructor(options: UpdatePartOptions) {
    this.#o = options;
    this.#log = options.logger.child({ component: "update" });
    this.#pins = options.pins;
  }

  async start(): Promise<void> {
    const u = this.#o.loaded.config.update;
    if (!u) {
      this.#log.info("self-update is off (the config has no update section)");
      return;
    }
    this.#started = true;
    this.#reportOutcome();
    const first = staggerMs(this.#o.loaded.config.instance, u.checkIntervalSeconds);
    this.#log.info({ firstCheckInS: Math.round(first / 1000), intervalS: u.checkIntervalSeconds, apply: u.apply, underLauncher: this.#o.underLauncher, pins: this.#pins.source }, `self-update is on; uplink pins: ${describePins(this.#pins)}`);
    this.#schedule(first);
  }

  async stop(budget: StopBudget): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#holdTimer) clearTimeout(this.#holdTimer);
    if (this.#running) await within(this.#running, Math.min(1_000, budget.left()));
  }

  /** Checks now (a check already running is joined); the schedule starts over from its end. */
  checkNow(): Promise<CheckReport> {
    if (!this.#running) {
      this.#runningSince = Date.now();
      this.#running = this.#check().finally(() => {
        this.#running = null;
        this.#runningSince = null;
      });
    }
    return this.#running;
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#nextAt = Date.now() + ms;
    this.#timer = setTimeout(() => void this.checkNow(), ms);
    this.#timer.unref();
  }

  async #check(): Promise<CheckReport> {
    const u = this.#o.loaded.config.update!;
    if (this.#timer) clearTimeout(this.#timer);
    this.#nextAt = null;
    const transport = this.#o.uplink.transport;
    let report: CheckReport;
    if (!transport) report = { at: new Date().toISOString(), outcome: "failed", reason: "the uplink has not started", via: "origin", pinsChanged: false };
    else {
      const { config } = this.#o.loaded;
      report = await runUpdateCheck({
        stateDir: this.#o.stateDir,
        update: u,
        cloudUrl: config.cloud.url,
        transport,
        mirrorTransport: () => this.#o.uplink.mirrorTransport(),
        runningVersion: this.#o.runningVersion,
        logger: this.#log,
        requestTimeoutMs: config.cloud.requestTimeoutMs,
      }).catch((err: unknown): CheckReport => ({ at: new Date().toISOString(), outcome: "failed", reason: (err as Error).message, via: "origin", pinsChanged: false }));
      if (report.pins && !samePins(report.pins, transport.pins)) {
        transport.repin(report.pins);
        this.#pins = pinsInEffect(config, this.#o.stateDir);
        this.#log.warn({ event: "uplink_repinned", pins: report.pins }, `uplink re-pinned without a restart: ${describePins(this.#pins)}`);
      }
    }
    const busy = report.busy === true;
    if (!busy) {
      this.#last = report;
      this.#failures = report.outcome === "failed" ? this.#failures + 1 : 0;
      if (report.outcome === "available") this.#pending = report.bundle ?? null;
      else if (report.outcome !== "failed") this.#pending = null;
      this.#evaluate();
    }
    this.#schedule(busy ? BUSY_RETRY_MS : 1000 * (report.outcome === "failed" ? u.retryAfterErrorSeconds : u.checkIntervalSeconds));
    return report;
  }

  /** Requests the install of the pending release when nothing holds it; looks again while the window or the lock does. */
  #evaluate(): void {
    if (this.#holdTimer) clearTimeout(this.#holdTimer);
    const u = this.#o.loaded.config.update!;
    const b = this.#pending;
    this.#heldBy = null;
    if (!b || this.#stopped || this.#requested === b.version) return;
    const rolledBack = this.#rolledBack(b.version);
    if (rolledBack) this.#heldBy = { rolledBack };
    else if (u.apply === "manual") this.#heldBy = { apply: "manual" };
    else if (!this.#o.underLauncher) this.#heldBy = { launcher: "kerf run is not under kerf launch (KERF_LAUNCHER=1 unset): nothing would install it" };
    else {
      const now = new Date();
      const window = windowOpen(u.window, now) ? undefined : `outside the maintenance window ${describeWindow(u.window!)}`;
      const lock = this.#lockHolder() ?? undefined;
      if (window || lock) {
        this.#heldBy = { ...(window ? { window } : {}), ...(lock ? { lock: `the update lock is held: ${lock}` } : {}) };
        this.#holdTimer = setTimeout(() => this.#evaluate(), HOLD_RECHECK_MS);
        this.#holdTimer.unref();
      }
    }
    if (this.#heldBy) {
      // Looked at again every few seconds while held: said once per reason, not at each look.
      const said = `${b.version} ${JSON.stringify(this.#heldBy)}`;
      if (said !== this.#heldSaid) this.#log.info({ event: "update_held", version: b.version, heldBy: this.#heldBy }, `update ${b.version} is held back`);
      this.#heldSaid = said;
      return;
    }
    this.#heldSaid = null;
    const file = writeInstallRequest(this.#o.stateDir, b);
    this.#requested = b.version;
    this.#log.warn({ event: "update_requested", version: b.version, dir: b.dir, file }, `update ${b.version}: install requested from the launcher`);
  }

  #lockHolder(): string | null {
    return lockHolder(this.#o.loaded.config.update?.lock, { exists: existsSync, latest: this.#o.latest });
  }

  /** Why the launcher would refuse `version` again: it rolled back before (pointer.json). */
  #rolledBack(version: string): string | undefined {
    try {
      const p = readPointer(this.#o.stateDir, this.#o.runningVersion);
      const failed = p.failed;
      const last = p.lastOutcome;
      if (failed.includes(version) || (last && last.version === version && last.kind !== "committed")) return `version ${version} ${last?.kind ?? "rolled-back"} before${last?.reason ? `: ${last.reason}` : ""}`;
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, "cannot read the launcher's pointer");
    }
    return undefined;
  }

  /** The launcher's last outcome goes upstream once, as an event of the connector itself. */
  #reportOutcome(): void {
    const file = path.join(this.#o.stateDir, "update", "reported.json");
    let outcome: Outcome | null;
    try {
      outcome = readPointer(this.#o.stateDir, this.#o.runningVersion).lastOutcome;
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, "cannot read the launcher's pointer; no update outcome reported");
      return;
    }
    let reported: Outcome | null = null;
    try {
      reported = JSON.parse(readFileSync(file, "utf8")) as Outcome;
    } catch {
      // none reported yet
    }
    this.#reported = reported;
    if (!outcome || (reported && reported.at === outcome.at && reported.kind === outcome.kind && reported.version === outcome.version)) return;
    const summary = `${outcome.kind}${outcome.reason ? `: ${outcome.reason}` : ""}`;
    const message: EventMessage = {
      kind: "event",
      machine: CONNECTOR_MACHINE,
      key: "update",
      t: Number.isNaN(Date.parse(outcome.at)) ? new Date().toISOString() : new Date(outcome.at).toISOString(),
      fields: { outcome: outcome.kind, version: outcome.version, reason: outcome.reason ?? null, summary, running: this.#o.runningVersion },
    };
    this.#o.sink.write([message]);
    // durable in the buffer before it counts as reported: a crash in between sends it twice, never not at all
    this.#o.sink.commit();
    try {
      mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
      writeFileAtomic(file, `${JSON.stringify(outcome)}\n`, 0o600);
    } catch (err) {
      this.#log.warn({ err: (err as Error).message, file }, "cannot record the reported update outcome; it may be reported again at the next start");
    }
    this.#reported = outcome;
    this.#log.info({ event: "update_outcome_reported", outcome: outcome.kind, version: outcome.version, reason: outcome.reason }, `update outcome reported upstream: ${outcome.version} ${summary}`);
  }

  /** The loop is alive while its next check is scheduled and not overdue, or a check runs and is not stuck. */
  #loopProblems(now: number): Problem[] {
    if (!this.#started || this.#stopped) return [];
    const problem = (reason: string): Problem[] => [{ part: this.name, reason, code: "UPDATE_STALLED" }];
    if (this.#runningSince !== null) {
      const ms = now - this.#runningSince;
      return ms > CHECK_STUCK_MS ? problem(`the update check started ${Math.round(ms / 60_000)} min ago has not ended (limit ${CHECK_STUCK_MS / 60_000} min)`) : [];
    }
    if (this.#nextAt === null) return problem("no update check is scheduled");
    const late = now - this.#nextAt;
    return late > CHECK_OVERDUE_MS ? problem(`the update check due at ${new Date(this.#nextAt).toISOString()} has not started (${Math.round(late / 1000)} s overdue)`) : [];
  }

  health(now = Date.now()): UpdatePartHealth {
    if (!this.#o.loaded.config.update) return { problems: [], update: null };
    const last = this.#last;
    const warnings: Problem[] = [];
    const problems = this.#loopProblems(now);
    if (this.#failures >= FAILURES_WARN && last) warnings.push({ part: this.name, reason: `update checks failed ${this.#failures} times in a row; last: ${last.reason}`, code: "UPDATE" });
    if (last?.outcome === "refused") warnings.push({ part: this.name, reason: `the update channel offered what was refused: ${last.reason}`, code: "UPDATE" });
    if (this.#pending && this.#heldBy?.launcher) warnings.push({ part: this.name, reason: `update ${this.#pending.version} downloaded but kerf run is not under kerf launch`, code: "UPDATE" });
    const s = this.#pins.signed;
    const state: UpdateHealth["state"] = this.#running ? "checking" : this.#pending ? (this.#requested === this.#pending.version ? "requested" : this.#heldBy ? "held" : "downloaded") : "idle";
    return {
      problems,
      warnings,
      update: {
        state,
        lastCheckAt: last?.at ?? null,
        lastOutcome: last && { outcome: last.outcome, ...(last.reason ? { reason: last.reason } : {}), ...(last.version ? { version: last.version } : {}), via: last.via },
        nextCheckAt: this.#nextAt === null ? null : new Date(this.#nextAt).toISOString(),
        consecutiveFailures: this.#failures,
        available: this.#pending?.version ?? null,
        heldBy: this.#heldBy,
        underLauncher: this.#o.underLauncher,
        ...(this.#o.loaded.config.update.lock ? { lock: this.#lockHolder() } : {}),
        pins: { source: this.#pins.source, ...(s ? { release: s.release, targetsVersion: s.targetsVersion, appliedAt: s.appliedAt } : {}) },
        reported: this.#reported,
      },
    };
  }
}
