/**
 * `npm run chaos [-- --quick] [--seed N] [--kills N] [--counters N] [--period MS]`: the chaos run
 * (run.ts). Prints progress, the tally, and as its last line the JSON
 * {kills, values, delivered, dropped, lost, duplicates, ...}; exits 1 when a value is lost,
 * delivered twice or unaccounted for, or when a kill did not happen.
 */
import { parseArgs } from "node:util";
import { installProcessGuard } from "../process-guard.ts";
import { createLogger } from "../log.ts";
import { PRESETS, runChaos } from "./run.ts";
import { formatTally, passed } from "./tally.ts";

const { values } = parseArgs({
  options: {
    quick: { type: "boolean" },
    seed: { type: "string" },
    kills: { type: "string" },
    counters: { type: "string" },
    period: { type: "string" },
    "slack-ms": { type: "string" },
    "buffer-max-bytes": { type: "string" },
    "no-fill": { type: "boolean" },
    verbose: { type: "boolean" },
  },
  strict: true,
});
// A rejection nothing handled in the devcloud or simulator here is logged to stderr, as in kerf demo.
installProcessGuard(createLogger({ name: "kerf-chaos", level: "error", destination: 2 }));

const int = (v: string | undefined, name: string, fallback: number) => {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) {
    process.stderr.write(`chaos: --${name} must be a whole number ≥ 0, got ${v}\n`);
    process.exit(2);
  }
  return n;
};
const preset = values.quick ? PRESETS.quick : PRESETS.full;
const seed = int(values.seed, "seed", Date.now() % 1_000_000);
const result = await runChaos({
  ...preset,
  counters: int(values.counters, "counters", preset.counters),
  periodMs: int(values.period, "period", preset.periodMs),
  kills: int(values.kills, "kills", preset.kills),
  fillBuffer: preset.fillBuffer && !values["no-fill"],
  bufferMaxBytes: values["buffer-max-bytes"] ?? "1MiB",
  seed,
  slackMs: int(values["slack-ms"], "slack-ms", 2000),
  say: (line) => process.stdout.write(`${new Date().toISOString().slice(11, 23)} ${line}\n`),
});
process.stdout.write(formatTally(result) + "\n");
process.stdout.write(`faults        ${JSON.stringify(result.faults)} in ${result.seconds} s, seed ${seed}\n`);
if (values.verbose) for (const w of result.warnings) process.stdout.write(`connector: ${w}\n`);
for (const f of result.failures) process.stdout.write(`FAILED: ${f}\n`);
const ok = passed(result) && result.failures.length === 0;
const { kills, values: n, delivered, dropped, lost, duplicates, notRead, buffered, reannounced, droppedOther } = result;
process.stdout.write(JSON.stringify({ kills, values: n, delivered, dropped, lost, duplicates, notRead, buffered, reannounced, droppedOther, ok }) + "\n");
process.exit(ok ? 0 : 1);
