/**
 * Fixtures for the TUF attack tests: one devcloud and one template repository per test file;
 * each test gets a copy of the repository (served live by the devcloud), its own keys and its
 * own connector state, and forges metadata with the release tooling's own helpers.
 */
import { copyFileSync, cpSync, existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Metadata, type Root, type Snapshot, type Targets, type Timestamp } from "@tufjs/models";
import { expect } from "vitest";
import { startDevCloud, type DevCloud } from "../../src/devcloud/server.ts";
import { silentLogger } from "../../src/log.ts";
import { generateKey, signWith, type Role, type SigningKey } from "../../src/release/keys.ts";
import { addTarget, expiry, initRepo, loadRepo, metadataDir, metaFile, signingKeys, writeMetadata, type RepoOptions } from "../../src/release/repo.ts";
import { checkForUpdate, updateDirs, type UpdateCheck, type UpdateClientOptions } from "../../src/update/client.ts";
import { clientTransport, runCleanups, tempDir, type Cleanups } from "../uplink/helpers.ts";

type Json = Record<string, any>;

export interface Channel {
  cloud: DevCloud;
  /** A copy of the template repository, served from now on, with fresh connector state. */
  fresh(): Env;
  close(): Promise<void>;
}

export interface Env {
  dir: string;
  repoDir: string;
  keysDir: string;
  stateDir: string;
  /** Repository options (for addTarget, rotateKeys, ...); `now` moves the signing time. */
  o: (now?: Date) => RepoOptions;
  check(runningVersion?: string, trustedRoot?: string, more?: Partial<UpdateClientOptions>): Promise<UpdateCheck>;
}

/** Starts devcloud and builds the template: `init` options, then release 1.1.0 (min 1.0.0). */
export async function openChannel(init: Parameters<typeof initRepo>[0] extends infer O ? Partial<O> : never = {}): Promise<Channel> {
  const cleanup: Cleanups = [];
  const { dir, remove } = await tempDir("kerf-tuf-");
  cleanup.push(remove);
  const template = path.join(dir, "template");
  initRepo({ ...init, repoDir: path.join(template, "repo"), keysDir: path.join(template, "keys") });
  const { targets } = publish({ repoDir: path.join(template, "repo"), keysDir: path.join(template, "keys") }, "1.1.0", "1.0.0");
  // The bytes that `newRelease` describes as 1.2.0, where the client will look for them.
  const sha256 = targets.signed.targets["kerf-app-1.1.0.tar.gz"]!.hashes.sha256;
  const served = (version: string) => path.join(template, "repo", "targets", `${sha256}.kerf-app-${version}.tar.gz`);
  copyFileSync(served("1.1.0"), served("1.2.0"));
  const cloud = await startDevCloud({ dir: path.join(dir, "cloud"), logger: silentLogger(), requireTokens: false });
  cleanup.push(() => cloud.stop());
  const { transport } = await clientTransport(cloud.ca, [cloud.pin], cleanup);
  let n = 0;
  return {
    cloud,
    close: () => runCleanups(cleanup),
    fresh(): Env {
      const envDir = path.join(dir, `t${++n}`);
      cpSync(template, envDir, { recursive: true });
      const repoDir = path.join(envDir, "repo");
      const keysDir = path.join(envDir, "keys");
      const stateDir = path.join(envDir, "state");
      cloud.tuf.dir = repoDir;
      delete cloud.faults.tuf;
      return {
        dir: envDir,
        repoDir,
        keysDir,
        stateDir,
        o: (now?: Date) => ({ repoDir, keysDir, ...(now ? { now } : {}) }),
        check: (runningVersion = "1.1.0", trustedRoot = path.join(metadataDir(repoDir), "1.root.json"), more = {}) =>
          checkForUpdate({ stateDir, trustedRoot, baseUrl: cloud.url, transport, runningVersion, logger: silentLogger(), ...more }),
      };
    },
  };
}

/** Publishes release `version` as the tooling does, with a small stand-in bundle (the client never opens it). */
export function publish(o: RepoOptions, version: string, minVersion = "0.0.0") {
  const file = path.join(o.repoDir, `..`, `bundle-${version}.tar.gz`);
  writeFileSync(file, `bundle ${version} `.repeat(200));
  return addTarget(o, `kerf-app-${version}.tar.gz`, file, { kerf: { version, minVersion } });
}

/** The connector's persisted trusted metadata: file name -> content. */
export function trustedState(env: Env): Map<string, string> {
  const dir = updateDirs(env.stateDir).metadata;
  const out = new Map<string, string>();
  if (!existsSync(dir)) return out;
  for (const f of readdirSync(dir)) out.set(f, readFileSync(path.join(dir, f), "utf8"));
  return out;
}

/** The version of role `role` the connector trusts now (0: none). */
export function trustedVersion(env: Env, role: Role): number {
  const text = trustedState(env).get(`${role}.json`);
  return text ? (JSON.parse(text) as Json).signed.version : 0;
}

/**
 * Runs a check that must end in `outcome` with a reason matching `reason`; nothing may be left in
 * the download dir and no persisted metadata may change except the roles in `mayAdvance`
 * (verified before the attacked one).
 */
export async function expectRefused(env: Env, reason: RegExp, options: { outcome?: "refused" | "failed"; running?: string; mayAdvance?: Role[] } = {}): Promise<string> {
  const before = trustedState(env);
  const result = await env.check(options.running ?? "1.0.0");
  expect(result).toMatchObject({ outcome: options.outcome ?? "refused", reason: expect.stringMatching(reason) });
  expect(readdirSync(updateDirs(env.stateDir).download)).toEqual([]);
  const after = trustedState(env);
  const may = new Set((options.mayAdvance ?? []).map((r) => `${r}.json`));
  for (const name of new Set([...before.keys(), ...after.keys()])) {
    if (!may.has(name)) expect({ name, text: after.get(name) }).toEqual({ name, text: before.get(name) });
  }
  return (result as { reason: string }).reason;
}

/** A key no root names: an attacker's. */
export function strangerKey(env: Env): SigningKey {
  return generateKey(path.join(env.dir, "stranger"), "targets");
}

export interface Forgery {
  /** Change the signed part of a new targets version (omit `targets` and `targetsKeys` to keep the current targets). */
  targets?: (signed: Json) => void;
  targetsKeys?: SigningKey[];
  /** The bytes served as N.targets.json, after the snapshot was computed over the real ones. */
  targetsServed?: (bytes: Buffer) => Buffer;
  snapshot?: (signed: Json) => void;
  snapshotKeys?: SigningKey[];
  snapshotServed?: (bytes: Buffer) => Buffer;
  timestamp?: (signed: Json) => void;
  timestampKeys?: SigningKey[];
  /** Signing time; expiry = now + the role's lifetime. */
  now?: Date;
}

/**
 * Writes new targets (optional), snapshot and timestamp versions into the served repository the
 * way repo.ts does, with every step open to forgery: other keys, changed fields, other bytes.
 */
export function forge(env: Env, f: Forgery = {}): { targets: number; snapshot: number; timestamp: number } {
  const repo = loadRepo(env.repoDir);
  const keys = (role: Role) => signingKeys(env.keysDir, repo.root, role);
  const t = { now: f.now ?? new Date() };
  let targetsVersion = repo.targets.signed.version;
  let targetsBytes: Buffer = Buffer.from(JSON.stringify(repo.targets.toJSON()));
  if (f.targets || f.targetsKeys || f.targetsServed) {
    const signed: Json = { ...repo.targets.signed.toJSON(), version: targetsVersion + 1, expires: expiry(t, "targets") };
    f.targets?.(signed);
    const md = make<Targets>("targets", signed, f.targetsKeys ?? keys("targets"));
    targetsVersion = md.signed.version;
    targetsBytes = writeMetadata(env.repoDir, "targets", md);
    if (f.targetsServed) writeFileSync(path.join(metadataDir(env.repoDir), `${targetsVersion}.targets.json`), f.targetsServed(targetsBytes));
  }
  const snapSigned: Json = {
    ...repo.snapshot.signed.toJSON(),
    version: repo.snapshot.signed.version + 1,
    expires: expiry(t, "snapshot"),
    meta: { "targets.json": metaFile(targetsVersion, targetsBytes).toJSON() },
  };
  f.snapshot?.(snapSigned);
  const snapshot = make<Snapshot>("snapshot", snapSigned, f.snapshotKeys ?? keys("snapshot"));
  const snapshotBytes = writeMetadata(env.repoDir, "snapshot", snapshot);
  if (f.snapshotServed) writeFileSync(path.join(metadataDir(env.repoDir), `${snapshot.signed.version}.snapshot.json`), f.snapshotServed(snapshotBytes));
  const tsSigned: Json = {
    ...repo.timestamp.signed.toJSON(),
    version: repo.timestamp.signed.version + 1,
    expires: expiry(t, "timestamp"),
    meta: { "snapshot.json": metaFile(snapshot.signed.version, snapshotBytes).toJSON() },
  };
  f.timestamp?.(tsSigned);
  const timestamp = make<Timestamp>("timestamp", tsSigned, f.timestampKeys ?? keys("timestamp"));
  writeMetadata(env.repoDir, "timestamp", timestamp);
  return { targets: targetsVersion, snapshot: snapshot.signed.version, timestamp: timestamp.signed.version };
}

/** Metadata of `type` with `signed`, signed by `keys` (none: unsigned). */
export function make<T extends Root | Targets | Snapshot | Timestamp>(type: string, signed: Json, keys: SigningKey[]): Metadata<T> {
  const md = Metadata.fromJSON(type as never, { signed, signatures: [] } as never) as unknown as Metadata<T>;
  signWith(md as never, keys);
  return md;
}

/** Serves `bytes` instead of metadata file `name` (an attacker in the path). */
export function serveInstead(cloud: DevCloud, name: string, bytes: Buffer): void {
  cloud.faults.tuf = (_req, res, file) => {
    if (file.kind !== "metadata" || file.name !== name) return false;
    res.writeHead(200, { "content-type": "application/json", "content-length": bytes.length });
    res.end(bytes);
    return true;
  };
}

export const readMeta = (env: Env, name: string): Buffer => readFileSync(path.join(metadataDir(env.repoDir), name));

/** A Forgery `targets` change: release 1.2.0, described like 1.1.0 (same bundle). */
export function newRelease(signed: Json): void {
  const t = structuredClone(signed.targets["kerf-app-1.1.0.tar.gz"]);
  t.custom.kerf.version = "1.2.0";
  signed.targets["kerf-app-1.2.0.tar.gz"] = t;
}
