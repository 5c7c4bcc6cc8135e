/**
 * Uplink pin sets from the signed channel: the newest verified release may carry
 * custom.kerf.pins. Once seen, they replace cloud.pins (live, through Transport.repin, and at
 * every later start) while the config has an update section. They are kept in
 * <state>/update/pins.json with the targets metadata version they came from.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { writeFileAtomic } from "../certs/files.ts";
import { validatePins } from "../certs/pins.ts";
import type { Config } from "../config/schema.ts";

export interface SignedPins {
  pins: string[];
  /** The version of the verified targets metadata that carried them. */
  targetsVersion: number;
  /** The release whose custom.kerf.pins they are. */
  release: string;
  appliedAt: string;
}

export interface PinsInEffect {
  pins: string[];
  source: "cloud.pins" | "signed";
  signed?: SignedPins;
}

export const signedPinsFile = (stateDir: string) => path.join(stateDir, "update", "pins.json");

export function readSignedPins(stateDir: string): SignedPins | null {
  try {
    const p = JSON.parse(readFileSync(signedPinsFile(stateDir), "utf8")) as SignedPins;
    if (!Number.isInteger(p.targetsVersion) || typeof p.release !== "string" || !Array.isArray(p.pins) || p.pins.length === 0) return null;
    validatePins(p.pins);
    return p;
  } catch {
    return null;
  }
}

export function writeSignedPins(stateDir: string, pins: SignedPins): void {
  writeFileAtomic(signedPinsFile(stateDir), `${JSON.stringify(pins, null, 2)}\n`, 0o600);
}

/** The pins the uplink uses: the signed set while self-update is on and one was verified, else cloud.pins. */
export function pinsInEffect(config: Pick<Config, "cloud" | "update">, stateDir: string): PinsInEffect {
  const signed = config.update ? readSignedPins(stateDir) : null;
  return signed ? { pins: signed.pins, source: "signed", signed } : { pins: config.cloud.pins, source: "cloud.pins" };
}

export function describePins(p: PinsInEffect): string {
  return p.signed ? `the signed pin set of release ${p.signed.release} (targets version ${p.signed.targetsVersion}, applied ${p.signed.appliedAt}), in place of cloud.pins` : "cloud.pins from the config";
}

/** The version of the targets metadata tuf-js verified and stored last. */
export function verifiedTargetsVersion(stateDir: string): number {
  const t = JSON.parse(readFileSync(path.join(stateDir, "update", "metadata", "targets.json"), "utf8")) as { signed: { version: number } };
  return t.signed.version;
}

export const samePins = (a: readonly string[], b: readonly string[]) => a.length === b.length && [...a].sort().join() === [...b].sort().join();
