import { isKerfError, KerfError } from "../errors.ts";
import { formatConfigErrors, loadConfig } from "../config/load.ts";
import { parseCli } from "./args.ts";

/**
 * `kerf validate --config FILE`: checks the config, its mapping file and the secrets they
 * name, and prints every problem as "FILE:LINE:COL: path: message". Exit 0 when usable,
 * 1 when not, 2 for a usage error.
 */
export async function run(argv: string[]): Promise<number> {
  try {
    const { values, positionals } = parseCli(argv, { config: { type: "string", short: "c" }, "state-dir": { type: "string" } }, "validate");
    if (positionals.length > 0) throw new KerfError("USAGE", `validate: unexpected argument '${positionals[0]}'; usage: kerf validate --config FILE`);
    if (values.config === undefined || values.config === "") throw new KerfError("USAGE", "validate: --config FILE is required");

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
    if (!isKerfError(err)) throw err; // a bug: main.ts reports it as an internal error
    process.stderr.write(`${formatConfigErrors(err)}\n`);
    return err.code === "USAGE" ? 2 : 1;
  }
}
