import { isKerfError, KerfError } from "../errors.ts";
import { formatConfigErrors, loadConfig } from "../config/load.ts";
import { noPositionals, parseCli, UsageError } from "./args.ts";

export const usage = `usage: kerf validate --config FILE

Checks the config, its mapping file and the secrets they name, and prints every problem as
FILE:LINE:COL: field: message. Exit 0 when the files are usable, 1 when not, 2 for a usage error.

  --config FILE, -c FILE   the connector config (kerf.yaml); its mapping file is checked with it
`;

/**
 * `kerf validate --config FILE`: checks the config, its mapping file and the secrets they
 * name, and prints every problem as "FILE:LINE:COL: path: message". Exit 0 when usable,
 * 1 when not, 2 for a usage error.
 */
export async function run(argv: string[]): Promise<number> {
  // --state-dir is accepted, as by every command, and has nothing to do here.
  const { values, positionals } = parseCli(argv, { config: { type: "string", short: "c" }, "state-dir": { type: "string" } }, "validate", usage);
  noPositionals(positionals, "validate", usage);
  if (values.config === undefined || values.config === "") throw new UsageError("validate: --config FILE is required", usage);
  try {
    const loaded = await loadConfig(values.config);
    for (const w of loaded.warnings) process.stderr.write(`${w} (warning)\n`);
    const machines = loaded.config.machines.length;
    let points = 0;
    for (const m of loaded.config.machines) {
      for (const g of loaded.mapping.machines[m.id]?.groups ?? []) points += g.nodes.length;
    }
    process.stdout.write(`${values.config}: ok (${machines} machine${machines === 1 ? "" : "s"}, ${points} data point${points === 1 ? "" : "s"})\n`);
    return 0;
  } catch (err) {
    if (!isKerfError(err) || err.code === "USAGE") throw err; // main reports a bug, or a usage error with the usage
    process.stderr.write(`${formatConfigErrors(err as KerfError)}\n`);
    return 1;
  }
}
