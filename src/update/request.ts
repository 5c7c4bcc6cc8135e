import { createHash } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { MANIFEST, type BundleManifest } from "../release/bundle.ts";
import { appDir, type AppPointer } from "./pointer.ts";
import { compareVersions, isVersion } from "./version.ts";

/**
 * The seam between the agent (kerf run, which checks the signed channel, downloads and unpacks
 * a verified bundle) and the launcher (which installs it):
 *
 *   <state>/app/request.json = { "version": "X.Y.Z", "dir": "<abs path>", "sha256": "<hex>", "requestedAt": "<ISO>" }
 *
 * written atomically by the agent, taken (read and removed) by the launcher.
 */
export interface InstallRequest {
  version: string;
  dir: string;
  sha256: string;
  requestedAt: string;
}

export const requestFile = (stateDir: string) => path.join(appDir(stateDir), "request.json");

export type Taken = { ok: true; request: InstallRequest } | { ok: false; version: string; reason: string };

/** Reads and removes the request; null when there is none. A malformed one is taken too, with the reason. */
export function takeRequest(stateDir: string): Taken | null {
  const file = requestFile(stateDir);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    return { ok: false, version: "unknown", reason: `cannot read ${file}: ${(err as Error).message}` };
  } finally {
    // Taken once, whatever it says: a request that was refused must not be refused every second.
    rmSync(file, { force: true });
  }
  let r: Partial<InstallRequest>;
  try {
    r = JSON.parse(text) as Partial<InstallRequest>;
  } catch (err) {
    return { ok: false, version: "unknown", reason: `${file} is not JSON: ${(err as Error).message}` };
  }
  const version = typeof r?.version === "string" ? r.version : "unknown";
  const bad = (field: string, expected: string) => ({ ok: false as const, version, reason: `${file}: ${field} is ${JSON.stringify(r?.[field as keyof InstallRequest])}, expected ${expected}` });
  if (r === null || typeof r !== "object") return { ok: false, version, reason: `${file} is not a JSON object` };
  if (!isVersion(r.version)) return bad("version", "MAJOR.MINOR.PATCH");
  if (typeof r.dir !== "string" || !path.isAbsolute(r.dir)) return bad("dir", "an absolute path");
  if (typeof r.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(r.sha256)) return bad("sha256", "64 hex digits");
  if (typeof r.requestedAt !== "string" || Number.isNaN(Date.parse(r.requestedAt))) return bad("requestedAt", "an ISO time");
  return { ok: true, request: { version: r.version, dir: r.dir, sha256: r.sha256, requestedAt: r.requestedAt } };
}

/**
 * Why a verified bundle must not be installed over what runs now, or null when it may:
 * anti-rollback (not above the active version, or rolled back before), and its dependency set
 * (node_modules comes with the image: a bundle built against another package-lock.json needs a
 * new image, not a slot).
 */
export function refusal(bundle: { dir: string; version: string }, pointer: AppPointer, factoryDir: string): string | null {
  if (compareVersions(bundle.version, pointer.active.version) <= 0) return `version ${bundle.version} is not above the active version ${pointer.active.version}`;
  if (pointer.failed.includes(bundle.version)) return `version ${bundle.version} was rolled back before`;
  let manifest: Partial<BundleManifest>;
  try {
    manifest = JSON.parse(readFileSync(path.join(bundle.dir, MANIFEST), "utf8")) as Partial<BundleManifest>;
  } catch (err) {
    return `the bundle in ${bundle.dir} has no readable ${MANIFEST}: ${(err as Error).message}`;
  }
  if (manifest.version !== bundle.version) return `the bundle's ${MANIFEST} says version ${JSON.stringify(manifest.version)}, the request ${bundle.version}`;
  let lock: string;
  try {
    lock = createHash("sha256").update(readFileSync(path.join(factoryDir, "package-lock.json"))).digest("hex");
  } catch (err) {
    return `the image has no readable package-lock.json to compare the bundle's dependencies with: ${(err as Error).message}`;
  }
  if (manifest.lockSha256 !== lock) return `the bundle ${bundle.version} was built against other dependencies (package-lock.json) than this image has: it needs a new image`;
  return null;
}
