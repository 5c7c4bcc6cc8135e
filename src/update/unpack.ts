/**
 * Unpacks a verified bundle (gzip tar) into <state>/update/unpacked/<version>/ for the launcher.
 * The bundle's hash is already checked against signed metadata; still, what a tar may carry
 * beyond plain files and folders is refused, not skipped: absolute paths, `..`, links, devices
 * and node_modules (dependencies come with the image).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import * as tar from "tar";
import { KerfError } from "../errors.ts";
import { MANIFEST } from "../release/bundle.ts";
import { compareVersions, isVersion } from "./version.ts";

export const unpackedDir = (stateDir: string) => path.join(stateDir, "update", "unpacked");

/** The unsafe entry's problem, or null for a plain file or folder inside the bundle. */
export function entryProblem(entryPath: string, type: string): string | null {
  if (type !== "File" && type !== "OldFile" && type !== "Directory") return `'${entryPath}' is a ${type}, not a plain file or folder`;
  if (path.posix.isAbsolute(entryPath) || /^[A-Za-z]:/.test(entryPath) || entryPath.includes("\\")) return `'${entryPath}' is an absolute path`;
  const parts = entryPath.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) return `'${entryPath}' leads out of the bundle ('..')`;
  if (parts[0] === "node_modules") return `'${entryPath}': a bundle carries no node_modules`;
  return null;
}

/**
 * Unpacks `file` into unpacked/<version>/ and returns that folder. The same tarball (`sha256`)
 * unpacked before is kept as it is: the launcher may be copying it right now.
 */
export async function unpackBundle(stateDir: string, file: string, version: string, sha256?: string): Promise<string> {
  const root = unpackedDir(stateDir);
  mkdirSync(root, { recursive: true, mode: 0o700 });
  const dest = path.join(root, version);
  const marker = `${dest}.sha256`;
  if (sha256 && existsSync(dest) && readText(marker) === sha256) return dest;
  rmSync(marker, { force: true });
  const tmp = path.join(root, `.unpacking-${version}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { mode: 0o700 });
  const fail = (problem: string, cause?: unknown) => new KerfError("UPDATE_BUNDLE", `the signed bundle ${version} cannot be unpacked: ${problem}`, cause ? { cause } : undefined);
  try {
    const problems: string[] = [];
    try {
      await tar.t({ file, onReadEntry: (e) => void (entryProblem(e.path, e.type) && problems.push(entryProblem(e.path, e.type)!)) });
    } catch (err) {
      throw fail(`not a gzip tar: ${(err as Error).message}`, err);
    }
    if (problems.length > 0) throw fail(problems.slice(0, 3).join("; "));
    // The filter again at extraction: only what was listed as safe is written.
    await tar.x({ file, cwd: tmp, strict: true, preserveOwner: false, filter: (p, e) => entryProblem(p, "type" in e ? e.type : "File") === null });
    let manifest: { version?: unknown };
    try {
      manifest = JSON.parse(readFileSync(path.join(tmp, MANIFEST), "utf8")) as { version?: unknown };
    } catch (err) {
      throw fail(`no readable ${MANIFEST}: ${(err as Error).message}`, err);
    }
    if (manifest.version !== version) throw fail(`its ${MANIFEST} says version ${JSON.stringify(manifest.version)}, the signed metadata ${version}`);
    rmSync(dest, { recursive: true, force: true });
    renameSync(tmp, dest);
    if (sha256) writeFileSync(marker, sha256);
    return dest;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** Removes unpacked versions not above `running`: installed already, or passed by. */
export function pruneUnpacked(stateDir: string, running: string): void {
  const root = unpackedDir(stateDir);
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return;
  }
  for (const n of names) {
    const v = n.replace(/\.sha256$/, "");
    if (isVersion(v) && compareVersions(v, running) <= 0) rmSync(path.join(root, n), { recursive: true, force: true });
  }
}

function readText(file: string): string | null {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return null;
  }
}
