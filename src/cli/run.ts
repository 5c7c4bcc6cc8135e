import path from "node:path";
import { Agent } from "../agent.ts";
import { loadConfig } from "../config/load.ts";
import { createLogger } from "../log.ts";
import { routeOpcuaLogging } from "../opcua/logging.ts";
import { parseCli } from "./args.ts";

/** `kerf run --config FILE [--state-dir DIR]`: the connector in the foreground until SIGTERM or SIGINT. */
export async function run(argv: string[]): Promise<number> {
  const { values } = parseCli(argv, { config: { type: "string" }, "state-dir": { type: "string" } }, "run");
  const configFile = values.config ?? process.env.KERF_CONFIG ?? "/etc/kerf/kerf.yaml";
  // Config errors throw a KerfError before anything starts; main prints them without a stack.
  const loaded = await loadConfig(configFile);
  const logger = createLogger({ level: loaded.config.log.level });
  routeOpcuaLogging(logger);
  const stateDir = path.resolve(values["state-dir"] ?? process.env.KERF_STATE_DIR ?? "/var/lib/kerf");
  const agent = new Agent({ loaded, stateDir, logger });
  // Listening before start: a SIGTERM during startup still stops cleanly, once started.
  const signal = new Promise<void>((resolve) => {
    process.once("SIGTERM", resolve);
    process.once("SIGINT", resolve);
  });
  await agent.start();
  logger.info({ instance: loaded.config.instance, stateDir, machines: loaded.config.machines.length }, "kerf started");

  await signal;
  logger.info("stopping");
  // The agent stops within STOP_DEADLINE_MS; this is the last resort before the runtime's SIGKILL.
  const lastResort = setTimeout(() => {
    logger.error("the connector did not stop in time; exiting (the buffer keeps what it holds)");
    process.exit(1);
  }, 9_500).unref();
  await agent.stop({ drainMs: 5_000 });
  clearTimeout(lastResort);
  // Sockets or timers a library still holds must not keep a stopped connector alive.
  setTimeout(() => process.exit(), 500).unref();
  return 0;
}
