import type { Logger } from "./log.ts";

/**
 * The log level can change while the connector runs: SIGHUP re-reads `log.level` from the config
 * file and sets it on the root logger. Child loggers read the root's level (pino children inherit
 * it until one sets its own; none does), so every component follows at once. A config that no
 * longer loads keeps the current level and says why.
 */
export function reloadLevelOnSighup(logger: Logger, readLevel: () => Promise<string>): () => void {
  const reload = () => void applyLevel(logger, readLevel);
  process.on("SIGHUP", reload);
  return () => process.off("SIGHUP", reload);
}

/** Reads the level and applies it; false when it could not be read (the level stays). */
export async function applyLevel(logger: Logger, readLevel: () => Promise<string>): Promise<boolean> {
  const before = logger.level;
  let level: string;
  try {
    level = await readLevel();
  } catch (err) {
    logger.warn({ event: "log_level_unchanged", logLevel: before, err: (err as Error).message }, `SIGHUP: the config does not load; the log level stays ${before}`);
    return false;
  }
  const note = () => logger.info({ event: "log_level", logLevel: level, previous: before }, `log level ${before} -> ${level}`);
  // logged under whichever of the two levels is more verbose, so that a lowered level still shows the change
  if (logger.levels.values[level]! > logger.levels.values[before]!) {
    note();
    logger.level = level;
  } else {
    logger.level = level;
    note();
  }
  return true;
}
