import { KerfError } from "./errors.ts";

/** Each command module exports `run(argv)` and resolves to the process exit code. */
type Command = (argv: string[]) => Promise<number>;

const commands: Record<string, () => Promise<Command>> = {
  validate: async () => (await import("./cli/validate.ts")).run,
  simulate: async () => (await import("./cli/simulate.ts")).run,
  devcloud: async () => (await import("./cli/devcloud.ts")).run,
  run: async () => (await import("./cli/run.ts")).run,
  demo: async () => (await import("./cli/demo.ts")).run,
  health: async () => (await import("./cli/health.ts")).run,
  trust: async () => (await import("./cli/trust.ts")).run,
  endpoints: async () => (await import("./cli/endpoints.ts")).run,
  browse: async () => (await import("./cli/browse.ts")).run,
};

const usage = `usage: kerf <command> [options]

commands:
  run       --config FILE [--state-dir DIR]     run the connector
  validate  --config FILE                       check config and mapping, report every error
  simulate  [--port N] [--load N --period MS]   simulated woodworking machine (OPC UA server)
  devcloud  [--port N] [--faults RATE --fault-seed N]
                                                reference cloud (HTTPS ingest, dev CA); --faults 0.25
                                                fails a quarter of ingest requests (seeded)
  demo      [--seconds N]                       simulator, devcloud and connector on loopback
  health                                        exit 0 when the running connector is healthy
  trust     list | accept THUMBPRINT | reject THUMBPRINT | add-issuer FILE | add-crl FILE
                                                the OPC UA trust store in <state-dir>/pki
  endpoints URL                                 a server's endpoints, security and certificate
  browse    URL [--root NODE] [--depth N]       a mapping-file skeleton of the server's variables

every command takes --state-dir DIR
`;

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    process.stdout.write(usage);
    return name === undefined ? 2 : 0;
  }
  const load = commands[name];
  if (!load) {
    process.stderr.write(`kerf: unknown command '${name}'\n\n${usage}`);
    return 2;
  }
  return (await load())(rest);
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (err) {
  // A user's mistake gets its message, never a stack trace; a bug still shows where it happened.
  if (err instanceof KerfError) {
    process.stderr.write(`kerf: ${err.message}\n${err.details.map((d) => `  ${d}\n`).join("")}`);
  } else {
    process.stderr.write(`kerf: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  }
  process.exitCode = 1;
}
