import path from "node:path";
import { judgeHealth } from "../health.ts";
import { parseCli } from "./args.ts";

/** `kerf health [--state-dir DIR]`: exit 0 when the running connector's loops make progress (for HEALTHCHECK). */
export async function run(argv: string[]): Promise<number> {
  const { values } = parseCli(argv, { "state-dir": { type: "string" } }, "health");
  const dir = path.resolve(values["state-dir"] ?? process.env.KERF_STATE_DIR ?? "/var/lib/kerf");
  const verdict = judgeHealth(dir);
  process.stdout.write(`${verdict.status}: ${verdict.reason}\n`);
  if (verdict.report) process.stdout.write(JSON.stringify(verdict.report) + "\n");
  return verdict.healthy ? 0 : 1;
}
