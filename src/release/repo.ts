/**
 * A TUF repository on disk, built and signed with @tufjs/models (TUF spec 1.0, consistent
 * snapshots). Layout, what devcloud serves under /tuf/:
 *
 *   metadata/N.root.json       every root version (clients walk them one by one)
 *   metadata/N.targets.json    metadata/N.snapshot.json   (consistent snapshots)
 *   metadata/timestamp.json
 *   metadata/{root,targets,snapshot}.json   copies of the newest, for the tooling and for people
 *   targets/<sha256>.<name>    the bundles, named by hash
 *
 * Keys come from files (keys.ts). Every change signs the roles it touches and then a new
 * snapshot and timestamp, so a client never sees a half-published state: timestamp.json is
 * written last and it alone points at the rest.
 */
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp } from "@tufjs/models";
import { writeFileAtomic } from "../certs/files.ts";
import { KerfError } from "../errors.ts";
import { generateKey, loadKeys, retireKey, ROLES, signWith, type Role, type SigningKey } from "./keys.ts";

/** The TUF specification version the metadata states. */
const SPEC_VERSION = "1.0.31";

/** The JSON of a root's signed part, the form in which keys and roles are changed. */
type RootJson = { keys: Record<string, unknown>; roles: Record<string, { keyids: string[]; threshold: number }> } & Record<string, unknown>;

/** Default lifetimes in days: short for the online roles, so a frozen repository is noticed soon. */
export const LIFETIME_DAYS: Record<Role, number> = { root: 365, targets: 90, snapshot: 7, timestamp: 1 };

export interface RepoOptions {
  repoDir: string;
  keysDir: string;
  /** The signing time (tests move it); expiry = now + lifetime. */
  now?: Date;
  lifetimeDays?: Partial<Record<Role, number>>;
}

export interface Repo {
  root: Metadata<Root>;
  targets: Metadata<Targets>;
  snapshot: Metadata<Snapshot>;
  timestamp: Metadata<Timestamp>;
}

export const metadataDir = (repoDir: string) => path.join(repoDir, "metadata");
export const targetsDir = (repoDir: string) => path.join(repoDir, "targets");

/** Creates keys (`keysPerRole` per role, default 1) and version 1 of every role. Refuses to overwrite. */
export function initRepo(o: RepoOptions & { keysPerRole?: Partial<Record<Role, number>>; thresholds?: Partial<Record<Role, number>> }): Repo {
  if (existsSync(path.join(metadataDir(o.repoDir), "root.json"))) throw new KerfError("RELEASE", `${o.repoDir} holds a TUF repository already`);
  for (const role of ROLES) {
    if (loadKeys(o.keysDir, role).length > 0) throw new KerfError("RELEASE", `${path.join(o.keysDir, role)} holds keys already: keys are made once, then rotated (kerf release rotate)`);
  }
  const json: RootJson = { _type: "root", spec_version: SPEC_VERSION, version: 1, expires: expiry(o, "root"), consistent_snapshot: true, keys: {}, roles: {} };
  for (const role of ROLES) {
    const n = o.keysPerRole?.[role] ?? 1;
    const threshold = o.thresholds?.[role] ?? 1;
    if (threshold < 1 || threshold > n) throw new KerfError("RELEASE", `${role}: threshold ${threshold} needs between 1 and ${n} keys`);
    const keys = Array.from({ length: n }, () => generateKey(o.keysDir, role).key);
    for (const k of keys) json.keys[k.keyID] = k.toJSON();
    json.roles[role] = { keyids: keys.map((k) => k.keyID), threshold };
  }
  const root = new Metadata(Root.fromJSON(json as never));
  mkdirSync(targetsDir(o.repoDir), { recursive: true });
  signWith(root, signingKeys(o.keysDir, root, "root"));
  writeRoot(o.repoDir, root);
  const targets = new Metadata(new Targets({ specVersion: SPEC_VERSION, version: 1, expires: expiry(o, "targets") }));
  return commit(o, root, targets, undefined, undefined);
}

/** The newest metadata of each role, as published. */
export function loadRepo(repoDir: string): Repo {
  const read = (name: string) => {
    const file = path.join(metadataDir(repoDir), name);
    if (!existsSync(file)) throw new KerfError("RELEASE", `${file} is missing: not a TUF repository made by kerf release init`);
    return JSON.parse(readFileSync(file, "utf8"));
  };
  return {
    root: Metadata.fromJSON("root" as never, read("root.json")) as unknown as Metadata<Root>,
    targets: Metadata.fromJSON("targets" as never, read("targets.json")) as unknown as Metadata<Targets>,
    snapshot: Metadata.fromJSON("snapshot" as never, read("snapshot.json")) as unknown as Metadata<Snapshot>,
    timestamp: Metadata.fromJSON("timestamp" as never, read("timestamp.json")) as unknown as Metadata<Timestamp>,
  };
}

/** Adds `file` as target `name` with `custom` metadata (replacing a target of that name), then snapshot and timestamp. */
export function addTarget(o: RepoOptions, name: string, file: string, custom: Record<string, unknown>): Repo {
  const repo = loadRepo(o.repoDir);
  for (const role of ["targets", "snapshot", "timestamp"] as const) signingKeys(o.keysDir, repo.root, role);
  const bytes = readFileSync(file);
  const sha256 = createHash("sha256").update(bytes).digest("hex");
  const published = repo.targets.signed.targets[name];
  if (published && (published.hashes.sha256 !== sha256 || published.length !== bytes.length)) {
    throw new KerfError("RELEASE", `${name} is published already with other content: a version is never reused (withdraw it, then publish a new version)`);
  }
  copyFileSync(file, path.join(targetsDir(o.repoDir), `${sha256}.${name}`));
  const targets = nextTargets(o, repo.targets);
  targets.signed.targets[name] = new TargetFile({ path: name, length: bytes.length, hashes: { sha256 }, unrecognizedFields: { custom: custom as never } });
  return commit(o, repo.root, targets, repo.snapshot, repo.timestamp);
}

/** Withdraws target `name` (a pulled release). The bundle file stays: older snapshots still name it. */
export function removeTarget(o: RepoOptions, name: string): Repo {
  const repo = loadRepo(o.repoDir);
  if (!repo.targets.signed.targets[name]) throw new KerfError("RELEASE", `no target '${name}' in ${o.repoDir}`);
  const targets = nextTargets(o, repo.targets);
  delete targets.signed.targets[name];
  return commit(o, repo.root, targets, repo.snapshot, repo.timestamp);
}

/**
 * A new timestamp: what a repository must do before the old one expires (daily). Snapshot and
 * targets are signed anew too once they are past half their lifetime, so that a repository
 * without new releases stays valid on this command alone.
 */
export function renewTimestamp(o: RepoOptions): Repo {
  const repo = loadRepo(o.repoDir);
  const now = (o.now ?? new Date()).getTime();
  const aging = (role: "targets" | "snapshot") => Date.parse(repo[role].signed.expires) - now < ((o.lifetimeDays?.[role] ?? LIFETIME_DAYS[role]) * 86_400_000) / 2;
  if (aging("targets")) return commit(o, repo.root, nextTargets(o, repo.targets), repo.snapshot, repo.timestamp);
  if (aging("snapshot")) return commit(o, repo.root, repo.targets, repo.snapshot, repo.timestamp);
  const timestamp = new Metadata(new Timestamp({ specVersion: SPEC_VERSION, version: repo.timestamp.signed.version + 1, expires: expiry(o, "timestamp"), snapshotMeta: repo.timestamp.signed.snapshotMeta }));
  signWith(timestamp, signingKeys(o.keysDir, repo.root, "timestamp"));
  writeMetadata(o.repoDir, "timestamp", timestamp);
  return { ...repo, timestamp };
}

/**
 * Replaces every key of `role` by `count` new ones (threshold kept, or `threshold`) in a new
 * root version, signed by the old root keys and, for a root rotation, by the new ones too: a
 * client accepts root N+1 only with both thresholds met (TUF spec 5.3.4-5.3.5). Then targets,
 * snapshot and timestamp are signed again with the current keys, at higher versions, so a
 * client that trusted metadata signed by a lost key (fast-forwarded versions) starts over.
 */
export function rotateKeys(o: RepoOptions & { role: Role; count?: number; threshold?: number }): Repo {
  const repo = loadRepo(o.repoDir);
  const oldRootKeys = signingKeys(o.keysDir, repo.root, "root");
  const oldKeys = loadKeys(o.keysDir, o.role);
  const fresh: SigningKey[] = [];
  for (let i = 0; i < (o.count ?? oldKeys.length); i++) fresh.push(generateKey(o.keysDir, o.role));
  const oldRole = repo.root.signed.roles[o.role]!;
  const threshold = o.threshold ?? oldRole.threshold;
  if (threshold < 1 || threshold > fresh.length) throw new KerfError("RELEASE", `${o.role}: threshold ${threshold} needs between 1 and ${fresh.length} keys`);
  const root = nextRoot(o, repo.root, (json) => {
    json.roles[o.role] = { keyids: fresh.map((k) => k.key.keyID), threshold };
    pruneKeys(json);
    for (const k of fresh) json.keys[k.key.keyID] = k.key.toJSON();
  });
  signWith(root, unique([...oldRootKeys, ...(o.role === "root" ? fresh : [])]));
  writeRoot(o.repoDir, root);
  for (const k of oldKeys) retireKey(o.keysDir, k);
  return commit(o, root, nextTargets(o, repo.targets), repo.snapshot, repo.timestamp);
}

/** Root version N+1 (unsigned) with `change` applied: for rotation, and for tests that sign it their own way. */
export function nextRoot(o: Pick<RepoOptions, "now" | "lifetimeDays">, current: Metadata<Root>, change: (json: RootJson) => void): Metadata<Root> {
  const json = structuredClone({ ...current.signed.toJSON(), version: current.signed.version + 1, expires: expiry(o, "root") }) as unknown as RootJson;
  change(json);
  return new Metadata(Root.fromJSON(json as never));
}

export function writeRoot(repoDir: string, root: Metadata<Root>): void {
  const text = JSON.stringify(root.toJSON());
  mkdirSync(metadataDir(repoDir), { recursive: true });
  writeFileAtomic(path.join(metadataDir(repoDir), `${root.signed.version}.root.json`), text, 0o644);
  writeFileAtomic(path.join(metadataDir(repoDir), "root.json"), text, 0o644);
}

/** Writes `N.<role>.json` (not for timestamp) and `<role>.json`; returns the bytes written. */
export function writeMetadata(repoDir: string, role: "targets" | "snapshot" | "timestamp", md: Metadata<Targets> | Metadata<Snapshot> | Metadata<Timestamp>): Buffer {
  const bytes = Buffer.from(JSON.stringify(md.toJSON()));
  const dir = metadataDir(repoDir);
  if (role !== "timestamp") writeFileAtomic(path.join(dir, `${md.signed.version}.${role}.json`), bytes.toString(), 0o644);
  writeFileAtomic(path.join(dir, `${role}.json`), bytes.toString(), 0o644);
  return bytes;
}

/** The keys on disk that `root` names for `role`; refuses when they cannot meet its threshold. */
export function signingKeys(keysDir: string, root: Metadata<Root>, role: Role): SigningKey[] {
  if (!existsSync(keysDir)) throw new KerfError("RELEASE", `${keysDir}: no such keys directory (--keys)`);
  const r = root.signed.roles[role]!;
  const keys = loadKeys(keysDir, role).filter((k) => r.keyIDs.includes(k.key.keyID));
  if (keys.length < r.threshold) {
    throw new KerfError("RELEASE", `${role}: ${keys.length} of the ${r.threshold} keys needed to sign are in ${path.join(keysDir, role)}`);
  }
  return keys;
}

/** ISO 8601 without milliseconds, as the TUF spec writes it. */
export function expiry(o: Pick<RepoOptions, "now" | "lifetimeDays">, role: Role): string {
  const days = o.lifetimeDays?.[role] ?? LIFETIME_DAYS[role];
  const t = (o.now ?? new Date()).getTime() + days * 86_400_000;
  return new Date(t).toISOString().replace(/\.\d{3}Z$/, "Z");
}

export function metaFile(version: number, bytes: Buffer): MetaFile {
  return new MetaFile({ version, length: bytes.length, hashes: { sha256: createHash("sha256").update(bytes).digest("hex") } });
}

/** Signs and writes targets, then a new snapshot over it, then a new timestamp over that. */
function commit(o: RepoOptions, root: Metadata<Root>, targets: Metadata<Targets>, snapshot: Metadata<Snapshot> | undefined, timestamp: Metadata<Timestamp> | undefined): Repo {
  signWith(targets, signingKeys(o.keysDir, root, "targets"));
  const targetsBytes = writeMetadata(o.repoDir, "targets", targets);
  const nextSnapshot = new Metadata(
    new Snapshot({ specVersion: SPEC_VERSION, version: (snapshot?.signed.version ?? 0) + 1, expires: expiry(o, "snapshot"), meta: { "targets.json": metaFile(targets.signed.version, targetsBytes) } }),
  );
  signWith(nextSnapshot, signingKeys(o.keysDir, root, "snapshot"));
  const snapshotBytes = writeMetadata(o.repoDir, "snapshot", nextSnapshot);
  const nextTimestamp = new Metadata(
    new Timestamp({ specVersion: SPEC_VERSION, version: (timestamp?.signed.version ?? 0) + 1, expires: expiry(o, "timestamp"), snapshotMeta: metaFile(nextSnapshot.signed.version, snapshotBytes) }),
  );
  signWith(nextTimestamp, signingKeys(o.keysDir, root, "timestamp"));
  writeMetadata(o.repoDir, "timestamp", nextTimestamp);
  return { root, targets, snapshot: nextSnapshot, timestamp: nextTimestamp };
}

function nextTargets(o: RepoOptions, current: Metadata<Targets>): Metadata<Targets> {
  const signed = Targets.fromJSON({ ...current.signed.toJSON(), version: current.signed.version + 1, expires: expiry(o, "targets") });
  return new Metadata(signed);
}

/** Drops the keys that no role names any more. */
function pruneKeys(json: RootJson): void {
  const used = new Set(Object.values(json.roles).flatMap((r) => r.keyids));
  for (const id of Object.keys(json.keys)) if (!used.has(id)) delete json.keys[id];
}

function unique(keys: SigningKey[]): SigningKey[] {
  const seen = new Map<string, SigningKey>();
  for (const k of keys) seen.set(k.key.keyID, k);
  return [...seen.values()];
}
