import { createHash } from "node:crypto";
import { cpSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import * as tar from "tar";
import { MANIFEST, packBundle, type BundleManifest } from "../../src/release/bundle.ts";
import type { VerifiedBundle } from "../../src/update/bundle.ts";

const repo = path.resolve(import.meta.dirname, "../..");

const sha256 = (data: Buffer | string) => createHash("sha256").update(data).digest("hex");

/**
 * An app bundle made from the current sources, as the signed channel hands it over (verified,
 * unpacked): bin, src, config, package.json with `version` and a kerf-bundle.json manifest
 * (lockSha256 of the repository's package-lock.json unless `lockSha256` says otherwise);
 * node_modules is a link to the repository's. `entry` replaces bin/kerf.js, for versions that
 * crash at start or hang.
 */
export function makeBundle(dir: string, version: string, options: { entry?: string; lockSha256?: string } = {}): VerifiedBundle {
  mkdirSync(dir, { recursive: true });
  for (const part of ["bin", "src", "config"]) cpSync(path.join(repo, part), path.join(dir, part), { recursive: true });
  const pkg = JSON.parse(readFileSync(path.join(repo, "package.json"), "utf8")) as Record<string, unknown>;
  writeFileSync(path.join(dir, "package.json"), JSON.stringify({ ...pkg, version }, null, 2));
  const manifest: BundleManifest = { format: 1, name: "kerf", version, minVersion: "0.0.0", lockSha256: options.lockSha256 ?? sha256(readFileSync(path.join(repo, "package-lock.json"))), createdAt: new Date().toISOString() };
  writeFileSync(path.join(dir, MANIFEST), JSON.stringify(manifest));
  symlinkSync(path.join(repo, "node_modules"), path.join(dir, "node_modules"));
  if (options.entry !== undefined) writeFileSync(path.join(dir, "bin", "kerf.js"), options.entry);
  return { dir, version };
}

/**
 * A real bundle: `kerf release pack` of the current sources with `version`, unpacked with tar
 * into `<work>/unpacked/<version>` as the agent does (no node_modules). `entry` replaces
 * bin/kerf.js after unpacking. Returns what an install request names.
 */
export async function packedBundle(work: string, version: string, options: { entry?: string } = {}): Promise<{ dir: string; version: string; sha256: string }> {
  const tarball = path.join(work, `kerf-app-${version}.tar.gz`);
  mkdirSync(work, { recursive: true });
  await packBundle({ sourceDir: repo, out: tarball, version });
  const dir = path.join(work, "unpacked", version);
  mkdirSync(dir, { recursive: true });
  await tar.x({ file: tarball, cwd: dir });
  if (options.entry !== undefined) writeFileSync(path.join(dir, "bin", "kerf.js"), options.entry);
  return { dir, version, sha256: sha256(readFileSync(tarball)) };
}
