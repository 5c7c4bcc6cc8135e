/**
 * One complete update check, as the agent's schedule and `kerf update check|apply` run it: the
 * signed channel over the pinned uplink transport, the mirror when the pinned origin cannot be
 * reached, the signed pin set kept, and a newer bundle unpacked for the launcher. One check at
 * a time per state folder (check-lock.ts).
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import type { Dispatcher } from "undici";
import { writeFileAtomic } from "../certs/files.ts";
import type { UpdateConfig } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import { takeCheckLock } from "./check-lock.ts";
import { checkForUpdate, type UpdateCheck } from "./client.ts";
import type { UnpackedBundle } from "./install-request.ts";
import { readSignedPins, samePins, verifiedTargetsVersion, writeSignedPins } from "./signed-pins.ts";
import { pruneUnpacked, unpackBundle } from "./unpack.ts";

export interface CheckerOptions {
  stateDir: string;
  update: UpdateConfig;
  /** cloud.url: the repository's origin unless update.url names another. */
  cloudUrl: string;
  /** The uplink's pinned transport. */
  transport: Dispatcher;
  /** A transport for update.mirror (CA-checked, not pinned, presenting the instance certificate); closed after the check. */
  mirrorTransport?: () => Dispatcher;
  runningVersion: string;
  logger: Logger;
  requestTimeoutMs?: number;
  /** How long to wait for another process's check; default 0 (fail at once). */
  lockWaitMs?: number;
}

export interface CheckReport {
  at: string;
  outcome: UpdateCheck["outcome"];
  reason?: string;
  /** The newer release (available) or the running version (up-to-date). */
  version?: string;
  via: "origin" | "mirror";
  /** A newer release, unpacked for the launcher. */
  bundle?: UnpackedBundle;
  /** The pin set the newest verified release signs, if any. */
  pins?: string[];
  /** This check stored a new signed pin set (pins.json). */
  pinsChanged: boolean;
  /** Another process held the check lock: nothing was checked, try again soon. */
  busy?: true;
}

export async function runUpdateCheck(o: CheckerOptions): Promise<CheckReport> {
  const at = new Date().toISOString();
  const lock = await takeCheckLock(o.stateDir, o.lockWaitMs ?? 0);
  if (!("release" in lock)) return { at, outcome: "failed", reason: `another update check is running (pid ${lock.heldBy})`, via: "origin", pinsChanged: false, busy: true };
  try {
    const common = { stateDir: o.stateDir, trustedRoot: o.update.trustedRoot, runningVersion: o.runningVersion, logger: o.logger, ...(o.requestTimeoutMs ? { requestTimeoutMs: o.requestTimeoutMs } : {}) };
    let via: CheckReport["via"] = "origin";
    let result = await checkForUpdate({ ...common, baseUrl: o.update.url ?? o.cloudUrl, transport: o.transport });
    if (result.outcome === "failed" && o.update.mirror && o.mirrorTransport) {
      o.logger.warn({ mirror: o.update.mirror, reason: result.reason }, `update: the pinned origin failed (${result.reason}); trying the mirror ${o.update.mirror}`);
      const transport = o.mirrorTransport();
      try {
        result = await checkForUpdate({ ...common, baseUrl: o.update.mirror, transport });
        via = "mirror";
      } finally {
        await transport.close().catch(() => undefined);
      }
    }
    const report = await settle(o, result, at, via);
    writeFileAtomic(lastCheckFile(o.stateDir), `${JSON.stringify(report)}\n`, 0o600);
    return report;
  } finally {
    lock.release();
  }
}

/** The last check's report, by the agent or kerf update check: what kerf update status shows. */
export const lastCheckFile = (stateDir: string) => path.join(stateDir, "update", "last-check.json");

export function readLastCheck(stateDir: string): CheckReport | null {
  try {
    return JSON.parse(readFileSync(lastCheckFile(stateDir), "utf8")) as CheckReport;
  } catch {
    return null;
  }
}

async function settle(o: CheckerOptions, result: UpdateCheck, at: string, via: CheckReport["via"]): Promise<CheckReport> {
  if (result.outcome === "refused" || result.outcome === "failed") return { at, outcome: result.outcome, reason: result.reason, via, pinsChanged: false };
  const version = result.outcome === "available" ? result.release.version : result.version;
  const pins = result.pins;
  let pinsChanged = false;
  if (pins) {
    const stored = readSignedPins(o.stateDir);
    if (!stored || !samePins(stored.pins, pins)) {
      writeSignedPins(o.stateDir, { pins, targetsVersion: verifiedTargetsVersion(o.stateDir), release: version, appliedAt: at });
      pinsChanged = true;
      o.logger.warn({ pins, release: version }, `update: the verified release ${version} signs a new uplink pin set; it replaces ${stored ? "the earlier signed set" : "cloud.pins"}`);
    }
  }
  pruneUnpacked(o.stateDir, o.runningVersion);
  if (result.outcome === "up-to-date") return { at, outcome: "up-to-date", version, via, ...(pins ? { pins } : {}), pinsChanged };
  try {
    // tuf-js has checked the file against this signed hash.
    const sha256 = result.release.sha256;
    const bundle = { version, dir: await unpackBundle(o.stateDir, result.file, version, sha256), sha256 };
    o.logger.info({ version, dir: bundle.dir }, `update ${version} downloaded and unpacked`);
    return { at, outcome: "available", version, via, bundle, ...(pins ? { pins } : {}), pinsChanged };
  } catch (err) {
    const reason = (err as Error).message;
    o.logger.warn({ version, reason }, `update refused: ${reason}`);
    return { at, outcome: "refused", reason, version, via, ...(pins ? { pins } : {}), pinsChanged };
  }
}
