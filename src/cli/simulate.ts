import fs from "node:fs/promises";
import path from "node:path";
import { isKerfError, KerfError } from "../errors.ts";
import { createLogger } from "../log.ts";
import { installProcessGuard } from "../process-guard.ts";
import { routeOpcuaLogging } from "../opcua/logging.ts";
import { validateLoad } from "../simulator/load-options.ts";
import { intOption, noPositionals, parseCli, UsageError } from "./args.ts";
import { prepareStateDir, stateDirOption } from "./state-dir.ts";
import { stopRequested } from "./stop.ts";

export const usage = `usage: kerf simulate [options]

The simulated woodworking machine (an OPC UA server) in the foreground until SIGINT or SIGTERM.
It prints its endpoint and its certificate, which a client must trust; client certificates are
refused until copied into its trust store (printed too).

  --port N                  default 4840 (0: any free port)
  --host H                  default 127.0.0.1
  --load N [--period MS]    N extra counters, each +1 every MS (default 1000) milliseconds
  --alarm-period MS         one dust-extraction alarm (active, then cleared) per MS milliseconds;
                            default 60000, at least 100
  --max-notifications-per-publish N   the server's limit per publish response
  --user NAME --password-file FILE    accept this user (UserName token) besides anonymous
  --rogue                   hostile values under Objects/Rogue, for testing a client
  --state-dir DIR           its PKI goes to DIR/simulator-pki; default $KERF_STATE_DIR or ./.kerf
`;

/**
 * `kerf simulate`: the simulated woodworking machine in the foreground until SIGINT or SIGTERM.
 * Prints the endpoint and the server certificate, which a client must trust.
 */
export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCli(
    argv,
    {
      port: { type: "string" },
      host: { type: "string" },
      load: { type: "string" },
      period: { type: "string" },
      "alarm-period": { type: "string" },
      "max-notifications-per-publish": { type: "string" },
      "state-dir": { type: "string" },
      user: { type: "string" },
      "password-file": { type: "string" },
      // hostile values under Objects/Rogue, for testing a client against a broken or malicious server
      rogue: { type: "boolean" },
    },
    "simulate",
    usage,
  );
  noPositionals(positionals, "simulate", usage);
  const port = intOption(values.port, "port", 4840);
  if (port > 65535) throw new UsageError(`--port must be 0..65535, got ${port}`);
  if (values.period !== undefined && values.load === undefined) {
    throw new UsageError("--period needs --load N (the number of counters)");
  }
  const load = values.load === undefined ? undefined : { count: intOption(values.load, "load", 0), periodMs: intOption(values.period, "period", 1000) };
  if (load) {
    try {
      validateLoad(load);
    } catch (err) {
      throw isKerfError(err, "USAGE") ? new UsageError(err.message) : err;
    }
  }
  const alarmPeriodMs = values["alarm-period"] === undefined ? undefined : intOption(values["alarm-period"], "alarm-period", 60_000);
  if (alarmPeriodMs !== undefined && alarmPeriodMs < 100) throw new UsageError(`--alarm-period must be ≥ 100 ms, got ${alarmPeriodMs}`);
  const perPublish = values["max-notifications-per-publish"] === undefined ? undefined : intOption(values["max-notifications-per-publish"], "max-notifications-per-publish", 1000);
  if (perPublish !== undefined && perPublish < 1) throw new UsageError(`--max-notifications-per-publish must be ≥ 1, got ${perPublish}`);
  const users = await readUsers(values.user, values["password-file"]);
  const stop = stopRequested();
  const pkiDir = path.join(prepareStateDir(stateDirOption(values["state-dir"], ".kerf")), "simulator-pki");

  const logger = createLogger({ name: "kerf-simulate" });
  installProcessGuard(logger);
  routeOpcuaLogging(logger);
  // loading node-opcua takes about a second: only once the arguments are known to be good
  const { startSimulator } = await import("../simulator/server.ts");
  const sim = await startSimulator({
    port,
    host: values.host ?? "127.0.0.1",
    pkiDir,
    load,
    users,
    alarmPeriodMs,
    maxNotificationsPerPublish: perPublish,
    rogue: values.rogue === true,
    logger,
    watchTrustStore: true,
  });
  process.stdout.write(
    [
      `endpoint     ${sim.endpointUrl}`,
      `certificate  ${sim.certificateFile}`,
      `thumbprint   ${sim.thumbprint} (SHA-1)`,
      `namespace    ${sim.namespaceUri}`,
      `trust store  ${path.join(pkiDir, "trusted", "certs")} (client certificates are refused until copied here)`,
      load ? `load         ${load.count} counters, +1 every ${load.periodMs} ms` : undefined,
      users.length ? `users        ${users.map((u) => u.username).join(", ")}` : undefined,
      values.rogue
        ? "rogue        Objects/Rogue serves hostile values: huge, deeply nested, malformed UTF-8, __proto__ keys, script; Rogue/Decoding: structures of types the client cannot learn, values node-opcua cannot decode"
        : undefined,
      `started in ${sim.startupMs} ms; Ctrl-C stops`,
      "",
    ]
      .filter((l) => l !== undefined)
      .join("\n"),
  );

  await stop;
  await sim.stop();
  return 0;
}

async function readUsers(user: string | undefined, passwordFile: string | undefined): Promise<{ username: string; password: string }[]> {
  if (user === undefined && passwordFile === undefined) return [];
  if (user === undefined || passwordFile === undefined) {
    throw new UsageError("--user and --password-file go together");
  }
  let password: string;
  try {
    password = (await fs.readFile(passwordFile, "utf8")).replace(/\r?\n$/, "");
  } catch (err) {
    throw new KerfError("SECRET_MISSING", `cannot read --password-file ${passwordFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (password.length === 0) throw new KerfError("SECRET_MISSING", `--password-file ${passwordFile} is empty; expected the password on its first line`);
  return [{ username: user, password }];
}
