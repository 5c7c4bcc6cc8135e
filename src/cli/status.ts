import { judgeHealth } from "../agent/health.ts";
import { formatStatus, statusSummary } from "../agent/status.ts";
import { noPositionals, parseCli } from "./args.ts";
import { stateDirOption } from "./state-dir.ts";

export const usage = `usage: kerf status [--json] [--state-dir DIR]

A summary of the running connector, read from the health report in its state directory (no
port): the verdict, each machine (state, security, items, age of the last value), the uplink, the
buffer, the identity, the tokens, the update loop and the version. Exits 0 when a report was read
(whatever its verdict), 1 when there is none.

  --json            the same summary as one JSON object, for scripts
  --state-dir DIR   the running connector's state directory; default $KERF_STATE_DIR or /var/lib/kerf
`;

/** `kerf status [--json]`: what the running connector reports, for a person or a script. */
export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCli(argv, { json: { type: "boolean" }, "state-dir": { type: "string" } }, "status", usage);
  noPositionals(positionals, "status", usage);
  const now = Date.now();
  const verdict = judgeHealth(stateDirOption(values["state-dir"]), now);
  if (!verdict.report) {
    if (values.json) process.stdout.write(`${JSON.stringify({ status: verdict.status, reason: verdict.reason })}\n`);
    else process.stderr.write(`kerf: ${verdict.reason}\n`);
    return 1;
  }
  const summary = statusSummary(verdict.report, now, verdict);
  process.stdout.write(values.json ? `${JSON.stringify(summary)}\n` : formatStatus(summary));
  return 0;
}
