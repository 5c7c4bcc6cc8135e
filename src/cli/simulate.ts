import fs from "node:fs/promises";
import path from "node:path";
import { KerfError } from "../errors.ts";
import { createLogger } from "../log.ts";
import { routeOpcuaLogging } from "../opcua/logging.ts";
import { validateLoad } from "../simulator/load-options.ts";
import { intOption, parseCli } from "./args.ts";

const usage = "kerf simulate [--port N] [--host H] [--load N [--period MS]] [--alarm-period MS] [--max-notifications-per-publish N] [--state-dir DIR] [--user NAME --password-file FILE] [--rogue]";

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
  );
  if (positionals.length > 0) throw new KerfError("USAGE", `simulate: unexpected argument '${positionals[0]}'`, { details: [usage] });
  const port = intOption(values.port, "port", 4840);
  if (port > 65535) throw new KerfError("USAGE", `--port must be 0..65535, got ${port}`);
  if (values.period !== undefined && values.load === undefined) {
    throw new KerfError("USAGE", "--period needs --load N (the number of counters)", { details: [usage] });
  }
  const load = values.load === undefined ? undefined : { count: intOption(values.load, "load", 0), periodMs: intOption(values.period, "period", 1000) };
  if (load) validateLoad(load);
  const alarmPeriodMs = values["alarm-period"] === undefined ? undefined : intOption(values["alarm-period"], "alarm-period", 60_000);
  if (alarmPeriodMs !== undefined && alarmPeriodMs < 100) throw new KerfError("USAGE", `--alarm-period must be ≥ 100 ms, got ${alarmPeriodMs}`);
  const perPublish = values["max-notifications-per-publish"] === undefined ? undefined : intOption(values["max-notifications-per-publish"], "max-notifications-per-publish", 1000);
  if (perPublish !== undefined && perPublish < 1) throw new KerfError("USAGE", `--max-notifications-per-publish must be ≥ 1, got ${perPublish}`);
  const users = await readUsers(values.user, values["password-file"]);
  const stateDir = path.resolve(values["state-dir"] ?? process.env.KERF_STATE_DIR ?? ".kerf");
  const pkiDir = path.join(stateDir, "simulator-pki");

  const logger = createLogger({ name: "kerf-simulate" });
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

  await new Promise<void>((resolve) => {
    process.once("SIGTERM", resolve);
    process.once("SIGINT", resolve);
  });
  await sim.stop();
  return 0;
}

async function readUsers(user: string | undefined, passwordFile: string | undefined): Promise<{ username: string; password: string }[]> {
  if (user === undefined && passwordFile === undefined) return [];
  if (user === undefined || passwordFile === undefined) {
    throw new KerfError("USAGE", "--user and --password-file go together", { details: [usage] });
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
