import { readFileSync } from "node:fs";
import { readJournal, readPointer } from "../update/pointer.ts";
import { UsageError, parseCli } from "./args.ts";
import { stateDirOption } from "./state-dir.ts";

const usage = `usage: kerf update status [--state-dir DIR] [--json]

Shows the active and previous app versions, whether the active one is still on trial (its health
gate), the last update outcome with its reason, and the last update steps. (check and apply come
with the signed channel.)

  --state-dir DIR   the connector's state directory; default $KERF_STATE_DIR or /var/lib/kerf
  --json            one JSON object instead of text
`;

/** `kerf update status`: what the launcher's pointer and journal in the state folder say. */
export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCli(argv, { "state-dir": { type: "string" }, json: { type: "boolean" } }, "update", usage);
  if (positionals[0] !== "status" || positionals.length > 1) throw new UsageError(positionals[0] === undefined ? "missing the subcommand" : `unknown subcommand '${positionals.join(" ")}'`, usage);
  const stateDir = stateDirOption(values["state-dir"]);
  const factoryVersion = (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;
  const pointer = readPointer(stateDir, factoryVersion);
  const steps = readJournal(stateDir).slice(-5);
  if (values.json) {
    process.stdout.write(JSON.stringify({ ...pointer, steps }) + "\n");
    return 0;
  }
  const ref = (r: { slot: string; version: string } | null) => (r ? `${r.version} (slot ${r.slot})` : "none");
  const o = pointer.lastOutcome;
  process.stdout.write(
    [
      `active:   ${ref(pointer.active)}${pointer.trial ? `, on trial since ${pointer.trial.since} (started ${pointer.trial.starts} times)` : ""}`,
      `previous: ${ref(pointer.previous)}`,
      `last outcome: ${o ? `${o.kind} ${o.version} at ${o.at}${o.reason ? `: ${o.reason}` : ""}` : "none"}`,
      ...steps.map((s) => `  ${s.at} ${s.step} ${s.version}${s.reason ? `: ${s.reason}` : ""}`),
    ].join("\n") + "\n",
  );
  return 0;
}
