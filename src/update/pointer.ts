import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from "node:fs";
import path from "node:path";
import { KerfError } from "../errors.ts";

/**
 * Where the launcher keeps app versions on the state volume:
 *
 *   <state>/app/pointer.json      which slot is active, which is previous, a trial, the last outcome
 *   <state>/app/journal.log       one line per update step (what an operator, and the crash tests, read)
 *   <state>/app/slots/a, b        unpacked app versions; "factory" is the image's own copy
 *   <state>/app/slots/.staging-*  a copy in progress (removed at the next start)
 *
 * One file holds active, previous and trial together, so that every change of them is a single
 * atomic rename: there is no moment at which "active" was switched and "previous" not yet.
 */
export type SlotName = "factory" | "a" | "b";

export interface SlotRef {
  slot: SlotName;
  version: string;
}

export type OutcomeKind = "committed" | "rolled-back" | "failed";

export interface Outcome {
  at: string;
  kind: OutcomeKind;
  /** The version the update was to install. */
  version: string;
  /** Why it rolled back or failed; to be reported upstream as a status message. */
  reason?: string;
}

export interface AppPointer {
  active: SlotRef;
  /** The only version a local revert may go back to; null after a rollback or on the factory version. */
  previous: SlotRef | null;
  /** Set while `active` has been switched to and is not yet committed (the health gate runs). */
  trial: { since: string; starts: number } | null;
  lastOutcome: Outcome | null;
  /** Versions that were rolled back: never installed again (a newer release may be). */
  failed: string[];
}

export function appDir(stateDir: string): string {
  return path.join(stateDir, "app");
}

export function slotsDir(stateDir: string): string {
  return path.join(appDir(stateDir), "slots");
}

const FILE = "pointer.json";

/** The pointer on disk; the factory version, active and committed, when there is none yet. */
export function readPointer(stateDir: string, factoryVersion: string): AppPointer {
  const file = path.join(appDir(stateDir), FILE);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { active: { slot: "factory", version: factoryVersion }, previous: null, trial: null, lastOutcome: null, failed: [] };
    throw new KerfError("UPDATE_STATE", `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const p = JSON.parse(text) as AppPointer;
    if (!isSlotRef(p.active) || (p.previous !== null && !isSlotRef(p.previous))) throw new Error("active or previous is not a slot");
    // The factory slot is the image's: its version is whatever the image carries now.
    if (p.active.slot === "factory") p.active.version = factoryVersion;
    if (p.previous?.slot === "factory") p.previous.version = factoryVersion;
    if (p.failed !== undefined && !(Array.isArray(p.failed) && p.failed.every((v) => typeof v === "string"))) throw new Error("failed is not a list of versions");
    return { active: p.active, previous: p.previous, trial: p.trial ?? null, lastOutcome: p.lastOutcome ?? null, failed: p.failed ?? [] };
  } catch (err) {
    // Written only by rename of a complete, fsynced file, so this is damage, not a torn write.
    throw new KerfError("UPDATE_STATE", `${file} is damaged: ${(err as Error).message}`, {
      cause: err,
      details: ["remove it to start the image's factory version; the slots stay on disk"],
    });
  }
}

function isSlotRef(r: unknown): r is SlotRef {
  const s = r as SlotRef | null;
  return s !== null && typeof s === "object" && (s.slot === "factory" || s.slot === "a" || s.slot === "b") && typeof s.version === "string";
}

/** Write, fsync, rename, fsync the folder: after a power loss the old or the new pointer is there, whole. */
export function writePointer(stateDir: string, pointer: AppPointer): void {
  const dir = appDir(stateDir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, FILE);
  writeDurably(file + ".tmp", JSON.stringify(pointer, null, 2) + "\n");
  renameSync(file + ".tmp", file);
  fsyncDir(dir);
}

export function writeDurably(file: string, text: string): void {
  const fd = openSync(file, "w", 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export function fsyncDir(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export type Step = "refused" | "staging" | "staged" | "stopped-old" | "switched" | "started" | "committed" | "rolling-back" | "rolled-back" | "staging-failed";

export interface JournalLine {
  at: string;
  step: Step;
  /** The version being installed (or refused, or rolled back). */
  version: string;
  slot?: SlotName;
  reason?: string;
}

/** Appends one step, fsynced: the line is on disk before the launcher goes on to the next step. */
export function appendJournal(stateDir: string, line: Omit<JournalLine, "at">): void {
  const dir = appDir(stateDir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const fd = openSync(path.join(dir, "journal.log"), "a", 0o600);
  try {
    writeSync(fd, JSON.stringify({ at: new Date().toISOString(), ...line }) + "\n");
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export function readJournal(stateDir: string): JournalLine[] {
  let text: string;
  try {
    text = readFileSync(path.join(appDir(stateDir), "journal.log"), "utf8");
  } catch {
    return [];
  }
  const lines: JournalLine[] = [];
  // a line cut by a power loss is the last one and is skipped
  for (const l of text.split("\n")) {
    try {
      if (l) lines.push(JSON.parse(l) as JournalLine);
    } catch {
      // torn last line
    }
  }
  return lines;
}
