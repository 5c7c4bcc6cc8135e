import { judgeHealth } from "../agent/health.ts";
import { noPositionals, parseCli } from "./args.ts";
import { stateDirOption } from "./state-dir.ts";

export const usage = `usage: kerf health [--state-dir DIR]

Reads the health report that the running connector rewrites in its state directory and exits 0
while its loops make progress, 1 when they do not (the container image's HEALTHCHECK): each
machine connected or retrying, the buffer writable, the uplink acknowledging, a valid certificate
and token with their renewals scheduled, the update check scheduled and not overdue. An
unhealthy verdict names the part that makes no progress, the reason and its last error's code.
kerf status shows the same report as a summary.
Warnings (the OPC UA application certificate expires within 30 days) keep it healthy and follow
"ok, with warnings:"; an expired certificate is unhealthy (code OPCUA_OWN_CERT_EXPIRED).

  --state-dir DIR   the running connector's state directory; default $KERF_STATE_DIR or /var/lib/kerf
`;

/** `kerf health [--state-dir DIR]`: exit 0 when the running connector's loops make progress (for HEALTHCHECK). */
export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCli(argv, { "state-dir": { type: "string" } }, "health", usage);
  noPositionals(positionals, "health", usage);
  const verdict = judgeHealth(stateDirOption(values["state-dir"]));
  process.stdout.write(`${verdict.status}: ${verdict.reason}\n`);
  if (verdict.report) process.stdout.write(JSON.stringify(verdict.report) + "\n");
  return verdict.healthy ? 0 : 1;
}
