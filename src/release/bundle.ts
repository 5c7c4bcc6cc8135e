/**
 * An app bundle: a gzip tar of what the launcher needs to run a Kerf version from a slot —
 * src/, bin/, package.json and package-lock.json — plus kerf-bundle.json, its manifest.
 * node_modules is not in it: dependencies come with the container image, and the manifest's
 * `lockSha256` lets the launcher refuse a bundle built against a different dependency set.
 */
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import * as tar from "tar";
import { KerfError } from "../errors.ts";
import { compareVersions, isVersion } from "../update/version.ts";

export const MANIFEST = "kerf-bundle.json";
export const BUNDLE_FILES = ["package.json", "package-lock.json", "bin", "src"] as const;

export interface BundleManifest {
  format: 1;
  name: "kerf";
  version: string;
  /** Versions below this must not run any more (a security fix): signed again in the targets metadata. */
  minVersion: string;
  /** SHA-256 (hex) of package-lock.json: the dependency set the bundle expects in node_modules. */
  lockSha256: string;
  createdAt: string;
}

/** The target name of a bundle in the TUF repository. */
export const bundleTargetName = (version: string) => `kerf-app-${version}.tar.gz`;

/** Packs `sourceDir` (a Kerf checkout) into `out`; `version` defaults to its package.json version. */
export async function packBundle(o: { sourceDir: string; out: string; version?: string; minVersion?: string; now?: Date }): Promise<BundleManifest> {
  const pkgFile = path.join(o.sourceDir, "package.json");
  let pkg: Record<string, unknown>;
  try {
    pkg = JSON.parse(readFileSync(pkgFile, "utf8")) as Record<string, unknown>;
  } catch (err) {
    throw new KerfError("RELEASE", `${pkgFile}: cannot read it as JSON: ${(err as Error).message}`, { cause: err });
  }
  const version = o.version ?? String(pkg.version);
  const minVersion = o.minVersion ?? "0.0.0";
  const versionFrom = o.version === undefined ? `the "version" of ${pkgFile}` : "--version";
  if (!isVersion(version)) throw new KerfError("RELEASE", `${versionFrom} '${version}' is not MAJOR.MINOR.PATCH`);
  if (!isVersion(minVersion)) throw new KerfError("RELEASE", `--min-version '${minVersion}' is not MAJOR.MINOR.PATCH`);
  if (compareVersions(minVersion, version) > 0) throw new KerfError("RELEASE", `--min-version ${minVersion} is above the bundle's own version ${version} (${versionFrom})`);
  const missing = BUNDLE_FILES.map((f) => path.join(o.sourceDir, f)).filter((f) => !existsSync(f));
  if (missing.length > 0) throw new KerfError("RELEASE", `${o.sourceDir} is not a Kerf checkout: ${missing.join(", ")} missing`);
  const stage = mkdtempSync(path.join(os.tmpdir(), "kerf-pack-"));
  try {
    for (const f of BUNDLE_FILES) cpSync(path.join(o.sourceDir, f), path.join(stage, f), { recursive: true });
    // The bundle's package.json states the bundle's version: `kerf --version` reads it.
    writeFileSync(path.join(stage, "package.json"), `${JSON.stringify({ ...pkg, version }, null, 2)}\n`);
    const manifest: BundleManifest = {
      format: 1,
      name: "kerf",
      version,
      minVersion,
      lockSha256: createHash("sha256").update(readFileSync(path.join(stage, "package-lock.json"))).digest("hex"),
      createdAt: (o.now ?? new Date()).toISOString(),
    };
    writeFileSync(path.join(stage, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
    try {
      await tar.c({ gzip: true, file: o.out, cwd: stage, portable: true }, [MANIFEST, ...BUNDLE_FILES]);
    } catch (err) {
      throw new KerfError("RELEASE", `${o.out}: cannot write the bundle (--out): ${(err as Error).message}`, { cause: err });
    }
    return manifest;
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

/** The manifest inside a bundle, checked. */
export async function readManifest(bundle: string): Promise<BundleManifest> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "kerf-manifest-"));
  try {
    try {
      await tar.x({ file: bundle, cwd: dir, filter: (p) => p === MANIFEST || p === `./${MANIFEST}` });
    } catch (err) {
      throw new KerfError("RELEASE", `${bundle}: not a gzip tar: ${(err as Error).message}`, { cause: err });
    }
    let m: Partial<BundleManifest>;
    try {
      m = JSON.parse(readFileSync(path.join(dir, MANIFEST), "utf8")) as Partial<BundleManifest>;
    } catch (err) {
      throw new KerfError("RELEASE", `${bundle}: no readable ${MANIFEST} (made by kerf release pack?): ${(err as Error).message}`, { cause: err });
    }
    if (m.format !== 1 || m.name !== "kerf" || !isVersion(m.version) || !isVersion(m.minVersion) || typeof m.lockSha256 !== "string") {
      throw new KerfError("RELEASE", `${bundle}: ${MANIFEST} is not a Kerf bundle manifest of format 1 (version, minVersion, lockSha256)`);
    }
    return m as BundleManifest;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
