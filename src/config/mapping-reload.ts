import { watch, type FSWatcher } from "node:fs";
import path from "node:path";
import { loadConfig, type LoadedConfig } from "./load.ts";
import { KerfError } from "../errors.ts";
import type { Logger } from "../log.ts";

/**
 * Watches the mapping file and hands each new version that passes the real loader to `apply`.
 * A bad mapping is refused with its file:line errors in the log, and the last good one stays
 * in force. Editors replace files rather than write them, so the folder is watched, not the file.
 */
export function watchMapping(options: {
  loaded: LoadedConfig;
  logger: Logger;
  apply: (loaded: LoadedConfig) => Promise<void>;
  debounceMs?: number;
}): { close(): void; reload(): Promise<boolean> } {
  const { loaded, logger } = options;
  const file = loaded.mappingFile;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<boolean> = Promise.resolve(true);

  const reload = async (): Promise<boolean> => {
    let next: LoadedConfig;
    try {
      next = await loadConfig(loaded.file);
    } catch (err) {
      const details = err instanceof KerfError ? err.details : [String(err)];
      logger.error({ file, errors: details }, "the changed mapping was refused; the last good mapping stays in force");
      return false;
    }
    await options.apply(next);
    logger.info({ file }, "mapping reloaded");
    return true;
  };

  let watcher: FSWatcher | null = null;
  try {
    watcher = watch(path.dirname(file), (_event, name) => {
      if (name !== path.basename(file)) return;
      clearTimeout(timer);
      timer = setTimeout(() => (running = running.then(reload, reload)), options.debounceMs ?? 300);
    });
  } catch (err) {
    logger.warn({ file, err: (err as Error).message }, "cannot watch the mapping file; changes need a restart");
  }
  return {
    close() {
      clearTimeout(timer);
      watcher?.close();
    },
    reload: () => (running = running.then(reload, reload)),
  };
}
