import { readFileSync } from "node:fs";
import { KerfError } from "./errors.ts";
import { HelpRequested, UsageError } from "./cli/args.ts";
import { requireDevelopmentInstall } from "./cli/development.ts";
import { requestStop } from "./cli/stop.ts";
import { usage } from "./cli/overview.ts";

/** Each command module exports `run(argv)` and resolves to the process exit code. */
type Command = (argv: string[]) => Promise<number>;

const commands: Record<string, () => Promise<Command>> = {
  validate: async () => (await import("./cli/validate.ts")).run,
  simulate: async () => (await import("./cli/simulate.ts")).run,
  devcloud: async () => (await import("./cli/devcloud.ts")).run,
  run: async () => (await import("./cli/run.ts")).run,
  launch: async () => (await import("./cli/launch.ts")).run,
  enroll: async () => (await import("./cli/enroll.ts")).run,
  demo: async () => (await import("./cli/demo.ts")).run,
  health: async () => (await import("./cli/health.ts")).run,
  status: async () => (await import("./cli/status.ts")).run,
  trust: async () => (await import("./cli/trust.ts")).run,
  pki: async () => (await import("./cli/pki.ts")).run,
  endpoints: async () => (await import("./cli/endpoints.ts")).run,
  browse: async () => (await import("./cli/browse.ts")).run,
  release: async () => (await import("./cli/release.ts")).run,
  update: async () => (await import("./cli/update.ts")).run,
  audit: async () => (await import("./cli/audit.ts")).run,
};

/** They load the simulator or the devcloud, which only a development install has (see cli/development.ts). */
const development = new Set(["simulate", "devcloud", "demo"]);

// A reader that goes away (kerf health | head -1) is not an error: the output is simply not
// wanted any more. A long-running command stops as it would on SIGTERM; others finish.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code !== "EPIPE" && err.code !== "ERR_STREAM_DESTROYED") throw err;
    if (stream === process.stdout) requestStop("stdout closed");
  });
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === "--help" || name === "-h") {
    process.stdout.write(usage);
    return 0;
  }
  if (name === "--version") {
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };
    process.stdout.write(`kerf ${pkg.version}\n`);
    return 0;
  }
  if (name === "help") return rest[0] !== undefined && commands[rest[0]] ? main([rest[0], "--help"]) : main(["--help"]);
  if (name === undefined) throw new UsageError("missing the command", usage);
  const load = commands[name];
  if (!load) throw new UsageError(`unknown ${name.startsWith("-") ? "option" : "command"} '${name}'`, usage);
  if (development.has(name)) requireDevelopmentInstall(`kerf ${name}`);
  try {
    return await (await load())(rest);
  } catch (err) {
    // A mistake found after parsing (a bad number, options that do not go together): point at the usage.
    if (err instanceof UsageError && err.usage === undefined) {
      throw new UsageError(err.message, `${err.details.map((d) => `  ${d}\n`).join("")}kerf ${name} --help shows the usage\n`);
    }
    throw err;
  }
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (err) {
  process.exitCode = report(err);
}

/** A user's mistake gets its message, never a stack trace; a bug still shows where it happened. */
function report(err: unknown): number {
  if (err instanceof HelpRequested) {
    process.stdout.write(err.usage);
    return 0;
  }
  if (err instanceof UsageError) {
    const usage = err.usage ?? "";
    process.stderr.write(`kerf: ${err.message}\n${usage.startsWith("usage:") ? "\n" : ""}${usage}`);
    return 2;
  }
  if (err instanceof KerfError) {
    process.stderr.write(`kerf: ${err.message}\n${err.details.map((d) => `  ${d}\n`).join("")}`);
    return 1;
  }
  process.stderr.write(`kerf: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  return 1;
}
