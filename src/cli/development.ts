import { existsSync } from "node:fs";
import { KerfError } from "../errors.ts";

/**
 * The simulator, the devcloud, the demo and the bench are development tools. A production
 * install (`npm ci --omit=dev`) leaves out what they load, the simulator's OPC UA server and
 * its nodesets, and the image also leaves out their sources (.dockerignore). The connector
 * and the commissioning commands never import them (test/cli/production.test.ts checks it).
 */
export const DEVELOPMENT_SOURCES = ["simulator", "devcloud", "demo", "bench", "chaos"] as const;

/** Throws one clear line when `command` cannot run here, before anything of it is loaded. */
export function requireDevelopmentInstall(command: string): void {
  if (developmentInstalled()) return;
  throw new KerfError(
    "DEV_COMMAND",
    `'${command}' is a development command, not part of this production install: install with dev dependencies (npm ci) or run it from the repository`,
  );
}

function developmentInstalled(): boolean {
  try {
    // a bare package resolves only where it is installed; a file URL resolves whether or not it exists
    import.meta.resolve("node-opcua-server");
  } catch {
    return false;
  }
  return DEVELOPMENT_SOURCES.every((dir) => existsSync(new URL(`../${dir}/`, import.meta.url)));
}
