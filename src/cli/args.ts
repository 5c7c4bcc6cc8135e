import { parseArgs, type ParseArgsConfig } from "node:util";
import { KerfError } from "../errors.ts";

/**
 * A mistake on the command line itself (an unknown option, a missing argument, a value of the
 * wrong form): main prints the message and the command's usage, or a pointer to it, on stderr
 * and exits 2. What the world refuses (no such certificate, a port in use) exits 1.
 */
export class UsageError extends KerfError {
  readonly usage: string | undefined;
  constructor(message: string, usage?: string) {
    super("USAGE", message);
    this.usage = usage;
  }
}

/** `--help` or `-h`: main prints the usage on stdout and exits 0. */
export class HelpRequested extends Error {
  readonly usage: string;
  constructor(usage: string) {
    super("help requested");
    this.usage = usage;
  }
}

type Options = NonNullable<ParseArgsConfig["options"]>;

/**
 * node:util parseArgs for one command. `--help`/`-h` anywhere before `--` shows `usage`, whatever
 * else is on the line; a parse error becomes a UsageError in our words, not the parser's.
 */
export function parseCli<T extends Options>(argv: string[], options: T, command: string, usage: string) {
  if (helpAsked(argv, options)) throw new HelpRequested(usage);
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: true });
  } catch (err) {
    throw new UsageError(`${command}: ${parseProblem(err as Error & { code?: string })}`, usage);
  }
}

function helpAsked(argv: string[], options: Options): boolean {
  // Lenient, so that a mistake elsewhere on the line does not hide the request for help.
  const { tokens } = parseArgs({ args: argv, options: { ...options, help: { type: "boolean", short: "h" } }, strict: false, allowPositionals: true, tokens: true });
  return tokens.some((t) => t.kind === "option" && t.name === "help");
}

function parseProblem(err: Error & { code?: string }): string {
  const option = /'(-[^' ,]+)/.exec(err.message)?.[1] ?? "";
  const long = /--[\w-]+/.exec(err.message)?.[0] ?? option;
  switch (err.code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `unknown option '${option}'`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      return /does not take an argument/.test(err.message) ? `${long} takes no value` : `${long} needs a value`;
    default:
      return err.message.split("\n", 1)[0]!;
  }
}

/** The one way a command refuses a stray positional argument. */
export function noPositionals(positionals: string[], command: string, usage: string): void {
  if (positionals.length > 0) throw new UsageError(`${command}: unexpected argument '${positionals[0]}'`, usage);
}

export function intOption(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`--${name} must be a whole number ≥ 0, got '${value}'`);
  return n;
}
