/**
 * `kerf demo --scenario update | bad-update`: the connector runs under its launcher, as in the
 * image; partway through, the demo publishes a new signed version to the devcloud's TUF
 * repository (a tampered one for bad-update) and the connector's own update loop finds it.
 * Values flow all the while; at the end the buffer and the cloud account for every value.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parse, stringify } from "yaml";
import { DurableBuffer } from "../buffer/buffer.ts";
import { silentLogger } from "../log.ts";
import { bundleTargetName, packBundle } from "../release/bundle.ts";
import { publishBundle } from "../release/publish.ts";
import { initRepo, metadataDir, targetsDir } from "../release/repo.ts";
import { NODE_FLAGS } from "../update/launcher.ts";
import { readPointer } from "../update/pointer.ts";
import type { Demo } from "./setup.ts";

export type UpdateScenario = "update" | "bad-update";

/** The app folder this demo runs from: the launcher's factory version. */
const APP_DIR = path.resolve(import.meta.dirname, "../..");

export interface UpdateScenarioResult {
  versionStart: string;
  versionEnd: string;
  updateOutcome: string;
  acknowledged: number;
  buffered: number;
  dropped: number;
  appended: number;
  /** Appended but neither acknowledged, buffered nor dropped with a reason: must be 0. */
  lost: number;
  duplicates: number;
  cloudItems: number;
}

export interface UpdateScenarioOptions {
  demo: Demo;
  /** The demo's folder: the release keys and repository go in it. */
  stateDir: string;
  scenario: UpdateScenario;
  /** Ends the run early (Ctrl-C, --seconds): resolves to the reason. */
  stop: Promise<string>;
  /** Seconds of values to show after the outcome is known. */
  afterSeconds: number;
  note: (line: string) => void;
  out: (line: string) => void;
}

export async function runUpdateScenario(o: UpdateScenarioOptions): Promise<UpdateScenarioResult> {
  const versionStart = appVersion();
  const next = bumpPatch(versionStart);
  const releaseDir = path.join(o.stateDir, "release");
  const repo = { repoDir: path.join(releaseDir, "repository"), keysDir: path.join(releaseDir, "keys") };
  initRepo(repo);
  o.demo.devcloud.tuf.dir = repo.repoDir;
  enableUpdates(o.demo.configFile, path.join(metadataDir(repo.repoDir), "1.root.json"));
  o.note(`signed repository ${repo.repoDir} (keys in ${repo.keysDir}), served at ${o.demo.devcloud.url}/tuf/`);

  const connectorDir = o.demo.connectorStateDir;
  const launcher = startLauncher(o.demo.configFile, connectorDir, o.note);
  let cloudItems = 0;
  const unsubscribe = o.demo.devcloud.store.onBatch((b) => {
    if (!b.duplicate) cloudItems += b.items;
  });
  const progress = setInterval(() => o.out(`demo: the cloud holds ${cloudItems} values; running version ${activeVersion(connectorDir, versionStart)}`), 2_000);
  let outcome = "none: the run ended before the update was decided";
  try {
    const stopped = o.stop.then((reason) => ({ stopped: reason }));
    const first = await Promise.race([waitFor(() => cloudItems > 0), stopped, launcher.exited.then(() => ({ stopped: "the launcher exited" }))]);
    if (first && typeof first === "object") {
      o.note(`stopping before the release was published (${first.stopped})`);
    } else {
      const bundle = path.join(releaseDir, bundleTargetName(next));
      await packBundle({ sourceDir: APP_DIR, out: bundle, version: next });
      await publishBundle({ ...repo, bundle });
      if (o.scenario === "bad-update") tamperTarget(repo.repoDir, bundleTargetName(next));
      o.out(`demo: published ${o.scenario === "bad-update" ? "a TAMPERED " : ""}version ${next}; the connector finds it at its next check (every 10 s)`);
      const decided = await Promise.race([waitFor(() => decidedOutcome(connectorDir, versionStart, next)), stopped, launcher.exited.then(() => ({ stopped: "the launcher exited" }))]);
      if (typeof decided === "string") {
        outcome = decided;
        o.out(`demo: update ${outcome}; values keep flowing`);
        await Promise.race([new Promise((r) => setTimeout(r, o.afterSeconds * 1000)), o.stop]);
      } else o.note(`stopping before the update was decided (${decided.stopped})`);
    }
  } finally {
    clearInterval(progress);
    await launcher.stop();
    unsubscribe();
  }
  const stats = bufferStats(connectorDir);
  const cloud = o.demo.devcloud.store.counts();
  return {
    versionStart,
    versionEnd: activeVersion(connectorDir, versionStart),
    updateOutcome: outcome,
    acknowledged: stats.ackedItems,
    buffered: stats.items,
    dropped: stats.droppedItems,
    appended: stats.appendedItems,
    lost: stats.appendedItems - stats.ackedItems - stats.items - stats.droppedItems,
    duplicates: cloud.duplicateItems,
    cloudItems: cloud.items,
  };
}

/** What the scenario expects: the update committed, the tampered one refused; nothing lost either way. */
export function scenarioPassed(scenario: UpdateScenario, r: UpdateScenarioResult): boolean {
  const expected = scenario === "update" ? r.updateOutcome === "committed" && r.versionEnd !== r.versionStart : r.updateOutcome.startsWith("refused") && r.versionEnd === r.versionStart;
  return expected && r.acknowledged > 0 && r.lost === 0 && r.dropped === 0;
}

function appVersion(): string {
  return (JSON.parse(readFileSync(path.join(APP_DIR, "package.json"), "utf8")) as { version: string }).version;
}

function bumpPatch(v: string): string {
  const [major, minor, patch] = v.split(".").map(Number);
  return `${major}.${minor}.${patch! + 1}`;
}

/** The demo config, with the update loop on and checking every 10 s (a fleet would check every few hours). */
function enableUpdates(configFile: string, trustedRoot: string): void {
  const config = parse(readFileSync(configFile, "utf8")) as Record<string, unknown>;
  config.update = { trustedRoot, checkIntervalSeconds: 10, retryAfterErrorSeconds: 10, healthTimeoutSeconds: 90 };
  writeFileSync(configFile, stringify(config));
}

/** Flips bytes in the middle of the published bundle: its signed hash no longer matches. */
function tamperTarget(repoDir: string, target: string): void {
  for (const name of readdirSync(targetsDir(repoDir))) {
    if (!name.endsWith(target)) continue;
    const file = path.join(targetsDir(repoDir), name);
    const bytes = readFileSync(file);
    for (let i = bytes.length >> 1; i < (bytes.length >> 1) + 64 && i < bytes.length; i++) bytes[i] = bytes[i]! ^ 0xff;
    writeFileSync(file, bytes);
  }
}

function activeVersion(stateDir: string, factoryVersion: string): string {
  try {
    return readPointer(stateDir, factoryVersion).active.version;
  } catch {
    return factoryVersion;
  }
}

/**
 * The outcome of the update to `next`, once there is one: the launcher's (committed or rolled
 * back, in its pointer) or the update loop's (refused, in the health report).
 */
function decidedOutcome(stateDir: string, factoryVersion: string, next: string): string | undefined {
  try {
    const p = readPointer(stateDir, factoryVersion);
    const last = p.lastOutcome;
    if (last && last.version === next) return last.kind === "committed" ? "committed" : `${last.kind}: ${last.reason ?? "no reason given"}`;
  } catch {
    // not written yet
  }
  const refused = refusedCheck(stateDir);
  return refused ? `refused: ${refused}` : undefined;
}

function refusedCheck(stateDir: string): string | undefined {
  try {
    const report = JSON.parse(readFileSync(path.join(stateDir, "health.json"), "utf8")) as { update?: { lastOutcome?: { outcome?: string; reason?: string } } };
    const last = report.update?.lastOutcome;
    return last?.outcome === "refused" ? (last.reason ?? "no reason given") : undefined;
  } catch {
    return undefined;
  }
}

async function waitFor<T>(probe: () => T | undefined | false): Promise<T> {
  for (;;) {
    const v = probe();
    if (v !== undefined && v !== false) return v;
    await new Promise((r) => setTimeout(r, 250));
  }
}

function bufferStats(stateDir: string): ReturnType<DurableBuffer["stats"]> {
  const buffer = DurableBuffer.open({ path: path.join(stateDir, "buffer.db"), maxBytes: 1024 ** 3, logger: silentLogger() });
  try {
    return buffer.stats();
  } finally {
    buffer.close();
  }
}

/** `kerf launch` as a child, as the image's entrypoint runs it; its warnings go to the demo's stderr. */
function startLauncher(configFile: string, stateDir: string, note: (line: string) => void): { exited: Promise<void>; stop(): Promise<void> } {
  const child: ChildProcess = spawn(process.execPath, [...NODE_FLAGS, path.join(APP_DIR, "bin", "kerf.js"), "launch", "--config", configFile, "--state-dir", stateDir], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let rest = "";
  const onData = (chunk: string) => {
    const lines = (rest + chunk).split("\n");
    rest = lines.pop()!;
    for (const line of lines) {
      if (!line.trim()) continue;
      try {
        const l = JSON.parse(line) as { level?: number; msg?: string };
        if ((l.level ?? 0) >= 40) note(`connector: ${l.msg ?? line}`);
      } catch {
        note(`connector: ${line}`);
      }
    }
  };
  child.stdout!.setEncoding("utf8").on("data", onData);
  child.stderr!.setEncoding("utf8").on("data", onData);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return {
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
        await exited;
        clearTimeout(timer);
      }
    },
  };
}
