import { readFileSync } from "node:fs";
import path from "node:path";
import { parseYaml } from "../config/yaml-source.ts";
import { KerfError } from "../errors.ts";
import { createLogger } from "../log.ts";
import { Launcher } from "../update/launcher.ts";
import { takeLauncherLock } from "../update/lock.ts";
import type { Step } from "../update/pointer.ts";
import { noPositionals, parseCli } from "./args.ts";
import { configOption, prepareStateDir, stateDirOption } from "./state-dir.ts";
import { stopRequested } from "./stop.ts";

export const usage = `usage: kerf launch [--config FILE] [--state-dir DIR]

The container's entry point: runs the active app version's \`kerf run\` as a child, installs the
updates the connector has downloaded and verified (<state-dir>/app/request.json), gates a new
version on its health and rolls it back when it fails. SIGTERM or SIGINT stops the connector;
the launcher exits with its exit code. One launcher per state directory.

  --config FILE     the connector config (update.healthTimeoutSeconds, default 120); default
                    $KERF_CONFIG or /etc/kerf/kerf.yaml
  --state-dir DIR   the connector's state directory; default $KERF_STATE_DIR or /var/lib/kerf
`;

/** The image's own app folder: where this launcher runs from (the factory version). */
const factoryDir = path.resolve(import.meta.dirname, "../..");

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCli(argv, { config: { type: "string" }, "state-dir": { type: "string" } }, "launch", usage);
  noPositionals(positionals, "launch", usage);
  const stop = stopRequested();
  const configFile = configOption(values.config);
  const healthTimeoutMs = readHealthTimeout(configFile) * 1000;
  const stateDir = prepareStateDir(stateDirOption(values["state-dir"]));
  const lock = takeLauncherLock(stateDir);
  try {
    const version = (JSON.parse(readFileSync(path.join(factoryDir, "package.json"), "utf8")) as { version: string }).version;
    const pause = process.env.KERF_LAUNCHER_TEST_PAUSE as Step | undefined;
    const launcher = new Launcher({ stateDir, configFile, factory: { dir: factoryDir, version }, healthTimeoutMs, logger: createLogger({ level: "info" }), ...(pause ? { pauseAfter: pause } : {}) });
    void stop.then((reason) => launcher.stop(reason));
    // SIGHUP would end the launcher by default; the connector takes it (re-reads log.level)
    const hup = () => void launcher.signalChild("SIGHUP");
    process.on("SIGHUP", hup);
    try {
      return await launcher.run();
    } finally {
      process.off("SIGHUP", hup);
    }
  } finally {
    lock.release();
  }
}

/**
 * Only `update.healthTimeoutSeconds` of the config: the launcher is the image's and stays as it
 * is, while the config may grow fields that only a newer app version knows. The connector itself
 * checks the whole file.
 */
function readHealthTimeout(file: string): number {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new KerfError((err as NodeJS.ErrnoException).code === "ENOENT" ? "CONFIG_NOT_FOUND" : "CONFIG_INVALID", `cannot read config file ${file}: ${(err as Error).message}`);
  }
  const source = parseYaml(file, text);
  if (source.errors.length > 0) throw new KerfError("CONFIG_INVALID", `${file}: not valid YAML`, { details: source.errors.map((e) => `line ${source.position(e.offset).line}: ${e.message}`) });
  const update = (source.data as { update?: { healthTimeoutSeconds?: unknown } } | null)?.update;
  const value = update?.healthTimeoutSeconds;
  if (value === undefined) return 120;
  if (!Number.isInteger(value) || (value as number) < 5 || (value as number) > 3_600) {
    const { line } = source.position(source.locate(["update", "healthTimeoutSeconds"], "value"));
    throw new KerfError("CONFIG_INVALID", `${file}:${line}: update.healthTimeoutSeconds is ${JSON.stringify(value)}, expected whole seconds from 5 to 3600`);
  }
  return value as number;
}
