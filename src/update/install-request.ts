/**
 * The agent's side of the install request (the launcher takes it, see docs and STATUS):
 *   <state>/app/request.json = { "version", "dir", "sha256", "requestedAt" }, written atomically.
 */
import { mkdirSync } from "node:fs";
import path from "node:path";
import { writeFileAtomic } from "../certs/files.ts";
import { appDir } from "./pointer.ts";

export interface UnpackedBundle {
  version: string;
  /** Absolute path of the unpacked bundle. */
  dir: string;
  /** Hex SHA-256 of the tarball, as signed. */
  sha256: string;
}

export const installRequestFile = (stateDir: string) => path.join(appDir(stateDir), "request.json");

export function writeInstallRequest(stateDir: string, bundle: UnpackedBundle, now = new Date()): string {
  const file = installRequestFile(stateDir);
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  writeFileAtomic(file, `${JSON.stringify({ version: bundle.version, dir: bundle.dir, sha256: bundle.sha256, requestedAt: now.toISOString() })}\n`, 0o600);
  return file;
}
