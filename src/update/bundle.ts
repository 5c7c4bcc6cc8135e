import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { KerfError } from "../errors.ts";

/**
 * The seam between the signed channel and the launcher: an app bundle whose signature, length
 * and hash the channel (TUF) has already verified, unpacked in a directory. The launcher copies
 * it into a slot and never trusts it further than "it is what was signed".
 *
 * A bundle holds what the container image holds under /app: `bin/kerf.js`, `src/`, `package.json`
 * (whose `version` must equal `version` here) and `node_modules/` (a real bundle carries its own;
 * the test helper links the repository's).
 */
export interface VerifiedBundle {
  /** Absolute path of the unpacked bundle. */
  readonly dir: string;
  /** The version the signed metadata names for it. */
  readonly version: string;
}

/** The entry point that `kerf run` of a bundle or slot starts from. */
export const ENTRY = path.join("bin", "kerf.js");

/** Checks a bundle's shape: an entry point and a package.json naming the expected version. */
export function checkBundle(bundle: VerifiedBundle): void {
  const fail = (problem: string) => new KerfError("UPDATE_BUNDLE", `the app bundle ${bundle.version} in ${bundle.dir} is unusable: ${problem}`);
  if (!existsSync(path.join(bundle.dir, ENTRY))) throw fail(`it has no ${ENTRY}`);
  let version: unknown;
  try {
    version = (JSON.parse(readFileSync(path.join(bundle.dir, "package.json"), "utf8")) as { version?: unknown }).version;
  } catch (err) {
    throw fail(`cannot read its package.json: ${(err as Error).message}`);
  }
  if (version !== bundle.version) throw fail(`its package.json says version ${JSON.stringify(version)}, the signed metadata ${bundle.version}`);
}
