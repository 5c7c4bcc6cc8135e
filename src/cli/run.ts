import { loadConfig } from "../config/load.ts";
import { createLogger } from "../log.ts";
import { routeOpcuaLogging } from "../opcua/logging.ts";
import { installProcessGuard } from "../process-guard.ts";
import { reloadLevelOnSighup } from "../log-level.ts";
import { noPositionals, parseCli } from "./args.ts";
import { configOption, prepareStateDir, stateDirOption } from "./state-dir.ts";
import { requestStop, stopRequested } from "./stop.ts";

export const usage = `usage: kerf run [--config FILE] [--state-dir DIR]

Runs the connector in the foreground until SIGTERM or SIGINT. SIGHUP re-reads log.level from
the config and applies it at once.

  --config FILE     the connector config; default $KERF_CONFIG or /etc/kerf/kerf.yaml
  --state-dir DIR   where the buffer, identity, OPC UA certificates and health report live
                    (created if missing, must be writable); default $KERF_STATE_DIR or /var/lib/kerf
`;

/** `kerf run --config FILE [--state-dir DIR]`: the connector in the foreground until SIGTERM or SIGINT. */
export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCli(argv, { config: { type: "string" }, "state-dir": { type: "string" } }, "run", usage);
  noPositionals(positionals, "run", usage);
  const stop = stopRequested();
  // Started by the launcher (kerf launch) with an IPC channel: when the launcher dies the channel
  // closes, and an orphan must not keep writing the buffer beside the launcher's next child.
  if (process.send) {
    process.once("disconnect", () => requestStop("launcher gone"));
    process.channel?.unref();
  }
  // Config and state-dir errors throw a KerfError before anything starts; main prints them without a stack.
  const configFile = configOption(values.config);
  const loaded = await loadConfig(configFile);
  const stateDir = prepareStateDir(stateDirOption(values["state-dir"]));
  const logger = createLogger({ level: loaded.config.log.level });
  installProcessGuard(logger);
  // SIGHUP would end the process by default; here it re-reads log.level
  reloadLevelOnSighup(logger, async () => (await loadConfig(configFile)).config.log.level);
  routeOpcuaLogging(logger);
  // node-opcua takes about a second to load: only once the config and the state dir are known to be good.
  const { Agent, STOP_DEADLINE_MS } = await import("../agent/agent.ts");
  const agent = new Agent({ loaded, stateDir, logger, requestStop });
  // A stop may come while a part still starts (an enrolment or a first token hanging on a silent
  // server): the stop goes ahead and stops what has started, the start is left behind.
  const starting = agent.start();
  const stoppedEarly = await Promise.race([starting.then(() => undefined), stop]);
  if (stoppedEarly === undefined) logger.info({ event: "started", instance: loaded.config.instance, stateDir, machines: loaded.config.machines.length }, "kerf started");
  else starting.catch(() => undefined);

  logger.info({ event: "stopping", reason: await stop }, "stopping");
  // The agent stops within STOP_DEADLINE_MS; this is the last resort before the runtime's SIGKILL.
  const lastResort = setTimeout(() => {
    logger.error("the connector did not stop in time; exiting (the buffer keeps what it holds)");
    process.exit(1);
  }, STOP_DEADLINE_MS + 1_500).unref();
  await agent.stop({ drainMs: 5_000 });
  clearTimeout(lastResort);
  // Sockets or timers a library still holds must not keep a stopped connector alive.
  setTimeout(() => process.exit(), 500).unref();
  return 0;
}
