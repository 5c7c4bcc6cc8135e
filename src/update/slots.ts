import { closeSync, copyFileSync, existsSync, fsyncSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, symlinkSync } from "node:fs";
import path from "node:path";
import { KerfError } from "../errors.ts";
import { checkBundle, ENTRY, type VerifiedBundle } from "./bundle.ts";
import { fsyncDir, slotsDir, writeDurably, type SlotName, type SlotRef } from "./pointer.ts";

/** Written last into a slot: a slot without it (or with another version) was never completed. */
const MARKER = ".kerf-slot.json";

/**
 * How staging writes a file. Tests replace it to fail part-way (ENOSPC after so many bytes):
 * a tmpfs of limited size needs root, and what matters here is our handling of the error, which
 * is the same errno from any file system.
 */
export interface StagingWriter {
  copyFile(from: string, to: string): void;
}

export const plainWriter: StagingWriter = {
  copyFile(from, to) {
    copyFileSync(from, to);
    const fd = openSync(to, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  },
};

/** The folder of a slot; the factory version is the image's own app folder. */
export function slotPath(stateDir: string, slot: SlotName, factoryDir: string): string {
  return slot === "factory" ? factoryDir : path.join(slotsDir(stateDir), slot);
}

/** Whether a slot holds a completed copy of `ref.version` (the factory slot always does). */
export function slotComplete(stateDir: string, ref: SlotRef, factoryDir: string): boolean {
  if (ref.slot === "factory") return true;
  const dir = slotPath(stateDir, ref.slot, factoryDir);
  try {
    const marker = JSON.parse(readFileSync(path.join(dir, MARKER), "utf8")) as { version?: string };
    return marker.version === ref.version && existsSync(path.join(dir, ENTRY));
  } catch {
    return false;
  }
}

/** Removes copies that a crash left half done. */
export function removeStaleStaging(stateDir: string): void {
  const dir = slotsDir(stateDir);
  if (!existsSync(dir)) return;
  for (const name of readdirSync(dir)) if (name.startsWith(".staging-")) rmSync(path.join(dir, name), { recursive: true, force: true });
}

/**
 * Copies a verified bundle into `slot`: into a staging folder first, every file fsynced, the
 * marker last, then renamed into place. A failure (a full disk) removes the staging folder and
 * throws UPDATE_STAGING; the slot holds either its old complete copy, or nothing.
 * `onFirstFile` runs after the first file is copied (the crash tests stop there).
 * `nodeModules`: the slot's node_modules becomes a link to it (the image's dependencies; a
 * bundle carries none), instead of whatever the bundle has there.
 */
export async function stageBundle(stateDir: string, slot: "a" | "b", bundle: VerifiedBundle, options: { writer?: StagingWriter; onFirstFile?: () => Promise<void>; nodeModules?: string } = {}): Promise<void> {
  checkBundle(bundle);
  const writer = options.writer ?? plainWriter;
  const root = slotsDir(stateDir);
  mkdirSync(root, { recursive: true, mode: 0o700 });
  const staging = path.join(root, `.staging-${slot}`);
  const target = path.join(root, slot);
  rmSync(staging, { recursive: true, force: true });
  let first = true;
  const copyTree = async (from: string, to: string): Promise<void> => {
    mkdirSync(to, { mode: 0o700 });
    for (const entry of readdirSync(from, { withFileTypes: true })) {
      if (options.nodeModules && from === bundle.dir && entry.name === "node_modules") continue;
      const src = path.join(from, entry.name);
      const dst = path.join(to, entry.name);
      if (entry.isSymbolicLink()) symlinkSync(readlinkSync(src), dst);
      else if (entry.isDirectory()) await copyTree(src, dst);
      else if (entry.isFile()) {
        writer.copyFile(src, dst);
        // the copy is synchronous: let signals and timers in between files (a SIGTERM while
        // staging on a slow disk stops the running connector at once)
        await new Promise((resolve) => setImmediate(resolve));
        if (first) {
          first = false;
          await options.onFirstFile?.();
        }
      }
      // sockets, fifos and devices are no part of an app bundle
    }
    fsyncDir(to);
  };
  try {
    await copyTree(bundle.dir, staging);
    if (options.nodeModules) symlinkSync(options.nodeModules, path.join(staging, "node_modules"));
    writeDurably(path.join(staging, MARKER), JSON.stringify({ version: bundle.version, stagedAt: new Date().toISOString() }) + "\n");
    fsyncDir(staging);
    // The old copy in this slot is neither active nor previous (the caller made sure): it may go.
    if (lstatSync(target, { throwIfNoEntry: false })) rmSync(target, { recursive: true, force: true });
    renameSync(staging, target);
    fsyncDir(root);
  } catch (err) {
    rmSync(staging, { recursive: true, force: true });
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "ENOSPC" ? "no space left on the state volume" : code === "EDQUOT" ? "disk quota exceeded" : (err as Error).message;
    throw new KerfError("UPDATE_STAGING", `cannot stage version ${bundle.version} in slot ${slot}: ${why}${code ? ` (${code})` : ""}; the running version stays`, { cause: err });
  }
}
