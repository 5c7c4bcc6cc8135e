import { parseArgs, type ParseArgsConfig } from "node:util";
import { KerfError } from "../errors.ts";

/** node:util parseArgs, with its errors turned into a USAGE KerfError instead of a stack trace. */
export function parseCli<T extends NonNullable<ParseArgsConfig["options"]>>(argv: string[], options: T, command: string) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: true });
  } catch (err) {
    throw new KerfError("USAGE", `${command}: ${(err as Error).message}`);
  }
}

export function intOption(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new KerfError("USAGE", `--${name} must be a whole number ≥ 0, got '${value}'`);
  return n;
}
