/**
 * One update check over the signed channel: refresh the TUF metadata with tuf-js (root
 * rotation, timestamp, snapshot, targets: every signature, threshold, version, hash, length
 * and expiry check is tuf-js's), pick the newest app bundle from the verified targets, apply
 * anti-rollback, and download it (length and hash checked by tuf-js) into the download dir.
 *
 * State, under <stateDir>/update/:
 *   metadata/       tuf-js's trusted metadata; root.json starts as the root shipped in the image
 *   download/       the bundle of the last "available" check, nothing else (cleared at each check)
 *   minimum.json    the highest signed minimum version ever verified: it never goes down
 *
 * Nothing here installs: the launcher (another module) unpacks a downloaded bundle into a slot.
 */
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { Metadata, type Root, type TargetFile, type Targets } from "@tufjs/models";
import { Updater } from "tuf-js";
import type { Dispatcher } from "undici";
import { validatePins } from "../certs/pins.ts";
import { writeFileAtomic } from "../certs/files.ts";
import { KerfError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { TransportFetcher } from "./fetcher.ts";
import { DownloadError } from "./tuf-errors.ts";
import { compareVersions, isVersion, maxVersion } from "./version.ts";

export interface UpdateClientOptions {
  /** The connector's state directory; the update state is <stateDir>/update. */
  stateDir: string;
  /** The root.json shipped with the image: the only key material trusted from the start. */
  trustedRoot: string;
  /** The cloud's base URL; the repository is at <baseUrl>/tuf/metadata/ and /tuf/targets/. */
  baseUrl: string;
  /** The pinned mTLS transport of the uplink. */
  transport: Dispatcher;
  /** The version running now: never install a lower one. */
  runningVersion: string;
  logger: Logger;
  requestTimeoutMs?: number;
  /** The whole check, downloads included, ends by then (a server that drips its answer forever). Default 15 min. */
  checkTimeoutMs?: number;
}

/** A release as the verified targets metadata describes it. */
export interface Release {
  target: string;
  version: string;
  minVersion: string;
  length: number;
  sha256: string;
  /** Uplink pin set signed with the release (not applied here). */
  pins?: string[];
}

export type UpdateCheck =
  /** A newer release, verified and downloaded to `file`. */
  | { outcome: "available"; release: Release; file: string; minimum: string; pins: string[] | undefined }
  | { outcome: "up-to-date"; version: string; minimum: string; pins: string[] | undefined }
  /** The channel offered something that must not be installed: verification or anti-rollback. */
  | { outcome: "refused"; reason: string }
  /** The repository could not be reached or answered with an HTTP error: try again later. */
  | { outcome: "failed"; reason: string };

const TARGET = /^kerf-app-(\d+\.\d+\.\d+)\.tar\.gz$/;

export const updateDirs = (stateDir: string) => {
  const base = path.join(stateDir, "update");
  return { base, metadata: path.join(base, "metadata"), download: path.join(base, "download"), minimum: path.join(base, "minimum.json") };
};

export async function checkForUpdate(o: UpdateClientOptions): Promise<UpdateCheck> {
  const result = await check(o);
  if (result.outcome === "refused" || result.outcome === "failed") o.logger.warn({ outcome: result.outcome, reason: result.reason }, `update ${result.outcome}: ${result.reason}`);
  else o.logger.info({ outcome: result.outcome, version: result.outcome === "available" ? result.release.version : result.version }, `update check: ${result.outcome}`);
  return result;
}

async function check(o: UpdateClientOptions): Promise<UpdateCheck> {
  const dirs = updateDirs(o.stateDir);
  if (!isVersion(o.runningVersion)) return { outcome: "refused", reason: `the running version '${o.runningVersion}' is not MAJOR.MINOR.PATCH` };
  mkdirSync(dirs.metadata, { recursive: true, mode: 0o700 });
  rmSync(dirs.download, { recursive: true, force: true });
  mkdirSync(dirs.download, { recursive: true, mode: 0o700 });
  const trusted = path.join(dirs.metadata, "root.json");
  if (!existsSync(trusted)) {
    // The shipped root is checked before it becomes trusted state: a broken image must not leave a broken root behind.
    let shipped: Buffer;
    try {
      shipped = readFileSync(o.trustedRoot);
    } catch (err) {
      return { outcome: "refused", reason: `trusted root ${o.trustedRoot} cannot be read: ${(err as Error).message}` };
    }
    const problem = rootProblem(shipped, true);
    if (problem) return { outcome: "refused", reason: `trusted root ${o.trustedRoot} is not valid signed root metadata: ${problem}` };
    writeFileAtomic(trusted, shipped.toString("utf8"), 0o600);
  }
  const clock = clockProblem(dirs.minimum);
  if (clock) return { outcome: "refused", reason: clock };
  const before = readRootKeys(trusted);
  // Not re-seeded from the shipped root: that would forget the root rotations followed since.
  if (typeof before === "string") return { outcome: "refused", reason: `the trusted root ${trusted} is damaged: ${before}` };
  const fetcher = new TransportFetcher(o.transport, o.requestTimeoutMs, vetMetadata, o.checkTimeoutMs ?? 15 * 60_000, o.logger);
  let updater: Updater;
  try {
    updater = await refreshed(o, dirs, fetcher);
  } catch (err) {
    // TUF spec 5.3.11: after a rotation of the timestamp or snapshot keys, forget the trusted
    // timestamp and snapshot, so a client that was fed fast-forwarded versions by a stolen key recovers.
    const after = readRootKeys(trusted);
    if (typeof after === "string" || after.version === before.version || (after.timestamp === before.timestamp && after.snapshot === before.snapshot)) return failure("metadata", err, fetcher);
    o.logger.info({ root: after.version }, "update: timestamp or snapshot keys rotated; refreshing without the old timestamp and snapshot");
    for (const role of ["timestamp", "snapshot"]) rmSync(path.join(dirs.metadata, `${role}.json`), { force: true });
    try {
      updater = await refreshed(o, dirs, fetcher);
    } catch (err2) {
      return failure("metadata", err2, fetcher);
    }
  }
  // tuf-js persists metadata only after verifying it; what it verified this run is on disk now.
  const root = Metadata.fromJSON("root" as never, readJson(trusted)) as unknown as Metadata<Root>;
  const duplicate = duplicateKey(root);
  if (duplicate) return { outcome: "refused", reason: `root version ${root.signed.version} names one key under several key ids (${duplicate}): thresholds would count it twice` };
  const targets = Metadata.fromJSON("targets" as never, readJson(path.join(dirs.metadata, "targets.json"))) as unknown as Metadata<Targets>;
  const releases = appReleases(targets, o.logger);
  const minimum = releases.reduce((m, r) => maxVersion(m, r.minVersion), readMinimum(dirs.minimum));
  // `at` is the time of the last verified refresh: a clock found far before it is a wrong clock.
  writeFileAtomic(dirs.minimum, `${JSON.stringify({ minimum, at: new Date().toISOString() })}\n`, 0o600);
  const newest = releases.reduce<Release | undefined>((a, r) => (!a || compareVersions(r.version, a.version) > 0 ? r : a), undefined);
  const pins = newest?.pins;
  if (!newest) return { outcome: "up-to-date", version: o.runningVersion, minimum, pins };
  if (compareVersions(newest.version, minimum) < 0) {
    return { outcome: "refused", reason: `below the signed minimum: the newest release ${newest.version} is below the signed minimum version ${minimum}` };
  }
  const order = compareVersions(newest.version, o.runningVersion);
  if (order < 0) return { outcome: "refused", reason: `downgrade: the newest release ${newest.version} is below the running version ${o.runningVersion}` };
  if (order === 0) return { outcome: "up-to-date", version: o.runningVersion, minimum, pins };
  try {
    const info = await updater.getTargetInfo(newest.target);
    if (!info) return { outcome: "refused", reason: `target ${newest.target} vanished from the verified metadata` };
    const file = await updater.downloadTarget(info, path.join(dirs.download, newest.target));
    return { outcome: "available", release: newest, file, minimum, pins };
  } catch (err) {
    rmSync(dirs.download, { recursive: true, force: true });
    mkdirSync(dirs.download, { recursive: true, mode: 0o700 });
    return failure(`target ${newest.target}`, err, fetcher);
  }
}

/** An Updater over `o`'s repository that has refreshed all metadata; throws what tuf-js refused. */
async function refreshed(o: UpdateClientOptions, dirs: ReturnType<typeof updateDirs>, fetcher: TransportFetcher): Promise<Updater> {
  const base = o.baseUrl.replace(/\/+$/, "");
  const updater = new Updater({
    metadataDir: dirs.metadata,
    metadataBaseUrl: `${base}/tuf/metadata`,
    targetBaseUrl: `${base}/tuf/targets`,
    targetDir: dirs.download,
    fetcher,
  });
  await updater.refresh();
  return updater;
}

/** Checks tuf-js does not make, on every root before tuf-js sees it: one key under two key ids would count twice. */
function vetMetadata(url: string, bytes: Buffer): void {
  if (!/\/\d+\.root\.json$/.test(url)) return;
  const problem = rootProblem(bytes, false);
  if (problem) throw new KerfError("UPDATE", `${url}: ${problem}`);
}

/** What is wrong with root metadata `bytes`; with `selfSigned`, its own signatures must meet its root threshold too. */
function rootProblem(bytes: Buffer, selfSigned: boolean): string | undefined {
  let root: Metadata<Root>;
  try {
    const json = JSON.parse(bytes.toString("utf8")) as { signed?: { _type?: unknown } };
    if (json?.signed?._type !== "root") return `its type is '${String(json?.signed?._type)}', expected 'root'`;
    root = Metadata.fromJSON("root" as never, json as never) as unknown as Metadata<Root>;
    if (selfSigned) root.verifyDelegate("root", root as never);
  } catch (err) {
    return describe(err);
  }
  const duplicate = duplicateKey(root);
  return duplicate ? `root version ${root.signed.version} names one key under several key ids (${duplicate}): thresholds would count it twice` : undefined;
}

/** The trusted root's version and its timestamp and snapshot key ids (to notice their rotation), or why it cannot be read. */
function readRootKeys(file: string): { version: number; timestamp: string; snapshot: string } | string {
  try {
    const signed = (readJson(file) as { signed: { version: number; roles: Record<string, { keyids: string[] }> } }).signed;
    const ids = (role: string) => [...(signed.roles[role]!.keyids ?? [])].sort().join(",");
    return { version: signed.version, timestamp: ids("timestamp"), snapshot: ids("snapshot") };
  } catch (err) {
    return describe(err);
  }
}

/**
 * Expiry protects against frozen metadata only if the clock is right. A clock far behind the
 * last verified refresh (one day of slack for a clock corrected backwards) is refused.
 */
function clockProblem(minimumFile: string): string | undefined {
  let at: unknown;
  try {
    at = (JSON.parse(readFileSync(minimumFile, "utf8")) as { at?: unknown }).at;
  } catch {
    return undefined;
  }
  const last = typeof at === "string" ? Date.parse(at) : NaN;
  if (Number.isNaN(last)) return undefined;
  const now = new Date();
  if (now.getTime() >= last - 86_400_000) return undefined;
  return `the clock is wrong: it says ${now.toISOString()}, more than a day before the last verified update check at ${new Date(last).toISOString()}`;
}

/** The Kerf releases among the verified targets; a target whose signed custom data is malformed is skipped, loudly. */
export function appReleases(targets: Metadata<Targets>, logger: Logger): Release[] {
  const out: Release[] = [];
  for (const [name, t] of Object.entries(targets.signed.targets)) {
    const problem = releaseProblem(name, t);
    if (typeof problem === "string") {
      logger.warn({ target: name, problem }, `update: target ${name} ignored: ${problem}`);
      continue;
    }
    out.push(problem);
  }
  return out;
}

function releaseProblem(name: string, t: TargetFile): Release | string {
  const m = TARGET.exec(name);
  if (!m) return "not named kerf-app-<version>.tar.gz";
  const kerf = (t.custom as { kerf?: Record<string, unknown> }).kerf;
  if (!kerf || typeof kerf !== "object") return "no custom.kerf metadata";
  const { version, minVersion, pins } = kerf;
  if (version !== m[1] || !isVersion(version)) return `custom.kerf.version '${String(version)}' does not match the name`;
  if (!isVersion(minVersion)) return `custom.kerf.minVersion '${String(minVersion)}' is not MAJOR.MINOR.PATCH`;
  if (compareVersions(minVersion, version) > 0) return `custom.kerf.minVersion ${minVersion} is above its own version ${version}`;
  const sha256 = t.hashes.sha256;
  if (!sha256) return "no sha256 hash";
  let pinSet: string[] | undefined;
  if (pins !== undefined) {
    if (!Array.isArray(pins) || !pins.every((p) => typeof p === "string")) return "custom.kerf.pins is not a list of strings";
    try {
      pinSet = validatePins(pins);
    } catch (err) {
      return (err as Error).message;
    }
  }
  return { target: name, version, minVersion, length: t.length, sha256, ...(pinSet ? { pins: pinSet } : {}) };
}

/** A key id of `root` whose public key another key id of the same role also carries. */
function duplicateKey(root: Metadata<Root>): string | undefined {
  for (const [role, r] of Object.entries(root.signed.roles)) {
    const seen = new Map<string, string>();
    for (const id of r.keyIDs) {
      const k = root.signed.keys[id];
      if (!k) continue;
      const value = `${k.keyType}:${k.keyVal.public ?? ""}`;
      const other = seen.get(value);
      if (other) return `${role}: ${other} and ${id}`;
      seen.set(value, id);
    }
  }
  return undefined;
}

function readMinimum(file: string): string {
  try {
    const m = (JSON.parse(readFileSync(file, "utf8")) as { minimum?: unknown }).minimum;
    return isVersion(m) ? m : "0.0.0";
  } catch {
    return "0.0.0";
  }
}

function readJson(file: string): never {
  return JSON.parse(readFileSync(file, "utf8")) as never;
}

/** A transport or HTTP failure is "failed" (retry later); anything tuf-js refused is "refused". */
function failure(what: string, err: unknown, fetcher: TransportFetcher): UpdateCheck {
  const reason = `${what}: ${describe(err)}`;
  return isTransportFailure(err) || fetcher.lastRequestFailed ? { outcome: "failed", reason } : { outcome: "refused", reason };
}

function isTransportFailure(err: unknown): boolean {
  if (err instanceof DownloadError && err.constructor.name === "DownloadHTTPError") return true;
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" && (code.startsWith("UND_ERR") || code.startsWith("UPLINK_") || ["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ENOTFOUND", "EPIPE"].includes(code));
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const name = err.constructor.name === "Error" ? "" : `${err.constructor.name}: `;
  return `${name}${err.message}`;
}
