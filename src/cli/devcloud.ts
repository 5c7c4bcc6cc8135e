import path from "node:path";
import { DevCaEnroller, ensureIdentity } from "../certs/identity.ts";
import { startDevCloud } from "../devcloud/server.ts";
import { createDevCa } from "../certs/devca.ts";
import { createLogger } from "../log.ts";
import { intOption, parseCli } from "./args.ts";

/**
 * `kerf devcloud [--port N] [--host H] [--state-dir DIR]`: the reference cloud in the
 * foreground until SIGINT or SIGTERM. `--issue-client NAME` instead writes a client key and
 * certificate for instance NAME (for cloud.identity in a connector config) and exits.
 */
export async function run(argv: string[]): Promise<number> {
  const { values } = parseCli(
    argv,
    { port: { type: "string" }, host: { type: "string" }, "state-dir": { type: "string" }, "issue-client": { type: "string" }, "log-level": { type: "string" } },
    "devcloud",
  );
  const dir = path.resolve(values["state-dir"] ?? process.env.KERF_STATE_DIR ?? ".kerf", "devcloud");
  // Issuing prints the two file paths on stdout; keep the log out of the way unless asked.
  const logger = createLogger({ level: values["log-level"] ?? (values["issue-client"] !== undefined ? "warn" : "info"), name: "devcloud" });

  if (values["issue-client"] !== undefined) {
    const instance = values["issue-client"];
    const ca = await createDevCa(dir, "CN=Kerf Devcloud CA");
    const identity = await ensureIdentity({ dir: path.join(dir, "clients", instance), instance, enroller: new DevCaEnroller(ca), logger });
    process.stdout.write(`certificateFile: ${identity.certFile}\nprivateKeyFile: ${identity.keyFile}\n`);
    return 0;
  }

  const cloud = await startDevCloud({ dir, port: intOption(values.port, "port", 0), host: values.host ?? "127.0.0.1", logger });
  process.stdout.write(`devcloud: ${cloud.url}\n  pin:     ${cloud.pin}\n  CA:      ${cloud.ca.certFile}\n  state:   ${dir}\n`);
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  await cloud.stop();
  return 0;
}
