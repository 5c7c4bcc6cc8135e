/**
 * A remote `mapping.set`: the sent text goes through the same loader and cross-checks as the
 * mapping file (against the config in force), from a candidate file beside it. Only a mapping
 * that passes replaces the file, atomically; the caller then applies it as a diff
 * (MachinesPart.reloadMapping). A refused one leaves the file, and the running mapping, as they
 * were. The config file itself (and so the local policy) is never written by a command.
 */
import { randomBytes } from "node:crypto";
import { rmSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { writeFileAtomic } from "../certs/files.ts";
import { loadConfig, type LoadedConfig } from "../config/load.ts";
import { KerfError } from "../errors.ts";

export type MappingSetResult = { ok: true; loaded: LoadedConfig } | { ok: false; errors: string[] };

/** `label` names the text in error lines, e.g. "mapping from command <jti>". */
export async function setMapping(loaded: LoadedConfig, text: string, label: string): Promise<MappingSetResult> {
  const target = loaded.mappingFile;
  const candidate = path.join(path.dirname(target), `.${path.basename(target)}.remote-${randomBytes(6).toString("hex")}`);
  writeFileSync(candidate, text, { mode: 0o600, flag: "wx" });
  let next: LoadedConfig;
  try {
    next = await loadConfig(loaded.file, { mappingFile: candidate, mappingDisplay: label });
  } catch (err) {
    if (err instanceof KerfError) return { ok: false, errors: err.details.length > 0 ? [...err.details] : [err.message] };
    throw err;
  } finally {
    rmSync(candidate, { force: true });
  }
  writeFileAtomic(target, text, modeOf(target));
  return { ok: true, loaded: { ...next, mappingFile: target } };
}

function modeOf(file: string): number {
  try {
    return statSync(file).mode & 0o777;
  } catch {
    return 0o644;
  }
}
