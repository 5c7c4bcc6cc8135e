import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import type { Logger } from "../log.ts";
import { ENTRY, type VerifiedBundle } from "./bundle.ts";
import { judgeTrial } from "./gate.ts";
import { appendJournal, readJournal, readPointer, writePointer, type AppPointer, type SlotRef, type Step } from "./pointer.ts";
import { refusal, takeRequest } from "./request.ts";
import { removeStaleStaging, slotComplete, slotPath, stageBundle, type StagingWriter } from "./slots.ts";

/** The same V8 flags as bin/kerf.js's shebang line (why: see there). */
export const NODE_FLAGS = ["--max-semi-space-size=16", "--max-old-space-size=1024"];

export interface LauncherOptions {
  stateDir: string;
  configFile: string;
  /** The image's own app folder and its version: the factory slot. */
  factory: { dir: string; version: string };
  /** How long a new version has to prove it works before it is rolled back. */
  healthTimeoutMs: number;
  /** Starts of one version on trial (the launcher itself restarted during it) before it is rolled back. */
  maxTrialStarts?: number;
  /** How long a child has between SIGTERM and SIGKILL. Default 9 s: the launcher, PID 1 of a
   * container, must have exited before the runtime's SIGKILL 10 s after its SIGTERM. */
  stopTimeoutMs?: number;
  logger: Logger;
  writer?: StagingWriter;
  /** Tests: after journaling this step the launcher waits for ever, so that a SIGKILL lands exactly there. */
  pauseAfter?: Step;
  /** How often `<state>/app/request.json` is looked for; default 1 s. */
  requestPollMs?: number;
}

type Event = { kind: "stop"; reason: string } | { kind: "exit"; code: number | null; signal: NodeJS.Signals | null } | { kind: "gate"; ready: boolean; reason: string } | { kind: "install"; bundle: VerifiedBundle };

/**
 * The immutable launcher: starts the active slot's `kerf run` as its child, forwards a stop,
 * restarts a committed version that crashed, commits a version on trial once its health gate
 * passes and rolls it back when it exits or does not pass in time. It alone writes the pointer.
 * Installs come from the agent's request file (request.ts) or from install().
 */
export class Launcher {
  readonly #o: LauncherOptions;
  readonly #log: Logger;
  #wake: ((e: Event) => void) | null = null;
  #queued: Event[] = [];

  constructor(options: LauncherOptions) {
    this.#o = options;
    this.#log = options.logger;
  }

  /** Asks to install a verified bundle: staged while the current version runs, then switched to. */
  install(bundle: VerifiedBundle): void {
    this.#post({ kind: "install", bundle });
  }

  stop(reason: string): void {
    this.#stopping = true;
    this.#wakeSleep?.();
    // The child's time to stop counts from now, whatever the loop is busy with (staging a bundle).
    if (this.#child) void this.#stopChild(this.#child);
    this.#post({ kind: "stop", reason });
  }

  #stopping = false;
  #wakeSleep: (() => void) | null = null;
  /** The connector running now, for signals passed on to it. */
  #child: ChildProcess | null = null;

  /** A pause that a stop cuts short. */
  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#wakeSleep = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  #post(e: Event): void {
    if (this.#wake) {
      const wake = this.#wake;
      this.#wake = null;
      wake(e);
    } else this.#queued.push(e);
  }

  #next(): Promise<Event> {
    const e = this.#queued.shift();
    if (e) return Promise.resolve(e);
    return new Promise((resolve) => (this.#wake = resolve));
  }

  #pointer(): AppPointer {
    return readPointer(this.#o.stateDir, this.#o.factory.version);
  }

  async #step(step: Step, version: string, extra: { reason?: string } = {}): Promise<void> {
    appendJournal(this.#o.stateDir, { step, version, ...extra });
    if (this.#o.pauseAfter === step) await new Promise(() => undefined);
  }

  /** Runs until stop(); resolves to the exit code of the last child. */
  async run(): Promise<number> {
    this.#recover();
    const poll = setInterval(() => this.#pollRequest(), this.#o.requestPollMs ?? 1_000);
    try {
      return await this.#loop();
    } finally {
      clearInterval(poll);
    }
  }

  #pollRequest(): void {
    let taken;
    try {
      taken = takeRequest(this.#o.stateDir);
    } catch (err) {
      this.#log.error({ err: (err as Error).message }, "cannot take the install request");
      return;
    }
    if (!taken) return;
    if (taken.ok) this.install({ dir: taken.request.dir, version: taken.request.version });
    else void this.#refuse(taken.version, `a malformed install request: ${taken.reason}`);
  }

  async #refuse(version: string, reason: string): Promise<void> {
    writePointer(this.#o.stateDir, { ...this.#pointer(), lastOutcome: { at: new Date().toISOString(), kind: "failed", version, reason } });
    await this.#step("refused", version, { reason });
    this.#log.error({ version, reason }, "refused the update; the running version stays");
  }

  async #loop(): Promise<number> {
    let backoffMs = 1_000;
    let lastCode = 0;
    for (;;) {
      if (this.#stopping) return lastCode;
      const p = this.#pointer();
      if (p.trial) writePointer(this.#o.stateDir, { ...p, trial: { ...p.trial, starts: p.trial.starts + 1 } });
      const child = this.#spawn(p.active);
      const startedAt = Date.now();
      if (p.trial) await this.#step("started", p.active.version);
      const gate = p.trial ? this.#watchGate(child, startedAt) : null;
      for (;;) {
        const e = await this.#next();
        if (e.kind === "stop") {
          gate?.cancel();
          return await this.#stopChild(child);
        }
        if (e.kind === "exit") {
          gate?.cancel();
          if (e.code === null && e.signal === null) continue;
          lastCode = e.code ?? 1;
          const how = e.signal ? `was killed by ${e.signal}` : `exited with code ${e.code}`;
          if (this.#pointer().trial) {
            const reason = `the new version ${how} before it became healthy`;
            await this.#step("rolling-back", p.active.version, { reason });
            await this.#rollback(reason);
          } else {
            this.#log.error({ version: p.active.version, code: e.code, signal: e.signal }, `the connector ${how}; restarting in ${backoffMs / 1000} s`);
            await this.#sleep(backoffMs);
            backoffMs = Math.min(backoffMs * 2, 30_000);
          }
          break;
        }
        if (e.kind === "gate") {
          if (e.ready) {
            const now = this.#pointer();
            writePointer(this.#o.stateDir, { ...now, trial: null, lastOutcome: { at: new Date().toISOString(), kind: "committed", version: now.active.version } });
            await this.#step("committed", now.active.version);
            backoffMs = 1_000;
            continue;
          }
          const reason = `the new version did not become healthy within ${this.#o.healthTimeoutMs / 1000} s: ${e.reason}`;
          await this.#step("rolling-back", p.active.version, { reason });
          await this.#stopChild(child);
          await this.#rollback(reason);
          break;
        }
        if (e.kind === "install") {
          const refused = this.#pointer().trial ? `version ${this.#pointer().active.version} is still on trial` : refusal(e.bundle, this.#pointer(), this.#o.factory.dir);
          if (refused) await this.#refuse(e.bundle.version, refused);
          else if (await this.#stage(e.bundle)) {
            await this.#stopChild(child);
            await this.#step("stopped-old", e.bundle.version);
            await this.#switch(e.bundle);
            break;
          }
        }
      }
    }
  }

  /** Passes a signal to the running connector (SIGHUP: re-read log.level); false without one. */
  signalChild(signal: NodeJS.Signals): boolean {
    const child = this.#child;
    return child !== null && child.exitCode === null && child.signalCode === null && child.kill(signal);
  }

  #spawn(ref: SlotRef): ChildProcess {
    const dir = slotPath(this.#o.stateDir, ref.slot, this.#o.factory.dir);
    const child = spawn(process.execPath, [...NODE_FLAGS, path.join(dir, ENTRY), "run", "--config", this.#o.configFile, "--state-dir", this.#o.stateDir], {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      // kerf run requests installs only when a launcher is there to take them
      env: { ...process.env, KERF_LAUNCHER: "1" },
    });
    child.once("exit", (code, signal) => this.#post({ kind: "exit", code, signal }));
    this.#child = child;
    this.#log.info({ version: ref.version, slot: ref.slot, pid: child.pid }, "started the connector");
    return child;
  }

  #watchGate(child: ChildProcess, startedAt: number): { cancel(): void } {
    const deadline = startedAt + this.#o.healthTimeoutMs;
    const timer = setInterval(() => {
      const v = judgeTrial(this.#o.stateDir, { pid: child.pid ?? -1, startedAt });
      if (v.ready || Date.now() > deadline) {
        clearInterval(timer);
        this.#post({ kind: "gate", ...v });
      }
    }, 500);
    return { cancel: () => clearInterval(timer) };
  }

  readonly #stops = new WeakMap<ChildProcess, Promise<number>>();

  /** SIGTERM (the connector drains and flushes its buffer), SIGKILL after the stop timeout; once per child. */
  #stopChild(child: ChildProcess): Promise<number> {
    let stop = this.#stops.get(child);
    if (!stop) this.#stops.set(child, (stop = this.#terminate(child)));
    return stop;
  }

  async #terminate(child: ChildProcess): Promise<number> {
    if (child.exitCode !== null || child.signalCode !== null) return child.exitCode ?? 1;
    const exited = new Promise<number>((resolve) => child.once("exit", (code) => resolve(code ?? 1)));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), this.#o.stopTimeoutMs ?? 9_000);
    const code = await exited;
    clearTimeout(timer);
    // the exit event was also posted; it belongs to this stop
    this.#queued = this.#queued.filter((e) => e.kind !== "exit");
    return code;
  }

  async #stage(bundle: VerifiedBundle): Promise<boolean> {
    const p = this.#pointer();
    const target = p.active.slot === "a" ? "b" : "a";
    // The copy overwrites the previous version: it must not be a revert target meanwhile.
    if (p.previous?.slot === target) writePointer(this.#o.stateDir, { ...p, previous: null });
    try {
      await stageBundle(this.#o.stateDir, target, bundle, {
        ...(this.#o.writer ? { writer: this.#o.writer } : {}),
        nodeModules: path.join(this.#o.factory.dir, "node_modules"),
        onFirstFile: () => this.#step("staging", bundle.version),
      });
    } catch (err) {
      const reason = (err as Error).message;
      writePointer(this.#o.stateDir, { ...this.#pointer(), lastOutcome: { at: new Date().toISOString(), kind: "failed", version: bundle.version, reason } });
      await this.#step("staging-failed", bundle.version, { reason });
      this.#log.error({ version: bundle.version, err: reason }, "the update failed; the running version stays");
      return false;
    }
    await this.#step("staged", bundle.version);
    return true;
  }

  async #switch(bundle: VerifiedBundle): Promise<void> {
    const p = this.#pointer();
    const target = p.active.slot === "a" ? "b" : "a";
    writePointer(this.#o.stateDir, { active: { slot: target, version: bundle.version }, previous: p.active, trial: { since: new Date().toISOString(), starts: 0 }, lastOutcome: p.lastOutcome, failed: p.failed });
    await this.#step("switched", bundle.version);
  }

  async #rollback(reason: string): Promise<void> {
    const { from, to } = this.#revert(reason);
    this.#log.error({ from, to, reason }, "rolled back");
    if (this.#o.pauseAfter === "rolled-back") await new Promise(() => undefined);
  }

  /** The only local revert: back to the previous slot (the factory version when it is gone). */
  #revert(reason: string): { from: string; to: string } {
    const p = this.#pointer();
    const back = p.previous && slotComplete(this.#o.stateDir, p.previous, this.#o.factory.dir) ? p.previous : { slot: "factory" as const, version: this.#o.factory.version };
    const failed = p.failed.includes(p.active.version) ? p.failed : [...p.failed, p.active.version];
    writePointer(this.#o.stateDir, { active: back, previous: null, trial: null, lastOutcome: { at: new Date().toISOString(), kind: "rolled-back", version: p.active.version, reason }, failed });
    appendJournal(this.#o.stateDir, { step: "rolled-back", version: p.active.version, reason });
    return { from: p.active.version, to: back.version };
  }

  /** After a crash: no half-made copy stays, and the active slot is complete and within its trial starts. */
  #recover(): void {
    removeStaleStaging(this.#o.stateDir);
    const p = this.#pointer();
    const last = readJournal(this.#o.stateDir).at(-1);
    if (!slotComplete(this.#o.stateDir, p.active, this.#o.factory.dir)) this.#revert(`slot ${p.active.slot} does not hold a complete copy of ${p.active.version}`);
    // A rollback that a crash interrupted is finished, with the reason it was started for.
    else if (p.trial && last?.step === "rolling-back" && last.version === p.active.version) this.#revert(last.reason ?? "the rollback was interrupted");
    else if (p.trial && p.trial.starts >= (this.#o.maxTrialStarts ?? 2)) this.#revert(`it was started ${p.trial.starts} times during its trial without becoming healthy`);
  }
}
