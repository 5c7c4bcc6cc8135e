import { readFileSync } from "node:fs";

/** App versions are plain MAJOR.MINOR.PATCH: anything else is refused, never guessed at. */
const pattern = /^(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})$/;

export function isVersion(value: unknown): value is string {
  return typeof value === "string" && pattern.test(value);
}

/** Negative when a < b, 0 when equal, positive when a > b. Both must satisfy isVersion. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < 3; i++) if (pa[i] !== pb[i]) return pa[i]! - pb[i]!;
  return 0;
}

export function maxVersion(a: string, b: string): string {
  return compareVersions(a, b) >= 0 ? a : b;
}

let running: string | undefined;

/** The version of the app this process runs (its package.json: a slot's bundle states its own); read once, it cannot change while the process runs. */
export function appVersion(): string {
  running ??= (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;
  return running;
}
