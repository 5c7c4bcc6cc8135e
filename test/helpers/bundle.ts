import { cpSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { VerifiedBundle } from "../../src/update/bundle.ts";

const repo = path.resolve(import.meta.dirname, "../..");

/**
 * An app bundle made from the current sources, as the signed channel hands it over (verified,
 * unpacked): bin, src, config and package.json with `version`; node_modules is a link to the
 * repository's (a real bundle carries its own). `entry` replaces bin/kerf.js, for versions that
 * crash at start or hang.
 */
export function makeBundle(dir: string, version: string, options: { entry?: string } = {}): VerifiedBundle {
  mkdirSync(dir, { recursive: true });
  for (const part of ["bin", "src", "config"]) cpSync(path.join(repo, part), path.join(dir, part), { recursive: true });
  const pkg = JSON.parse(readFileSync(path.join(repo, "package.json"), "utf8")) as Record<string, unknown>;
  writeFileSync(path.join(dir, "package.json"), JSON.stringify({ ...pkg, version }, null, 2));
  symlinkSync(path.join(repo, "node_modules"), path.join(dir, "node_modules"));
  if (options.entry !== undefined) writeFileSync(path.join(dir, "bin", "kerf.js"), options.entry);
  return { dir, version };
}
