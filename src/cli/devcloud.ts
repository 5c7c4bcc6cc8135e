import { mkdirSync } from "node:fs";
import path from "node:path";
import { DevCaEnroller, ensureIdentity } from "../certs/identity.ts";
import { startDevCloud } from "../devcloud/server.ts";
import { checkInstanceName, createDevCa } from "../certs/devca.ts";
import { writeFileAtomic } from "../certs/files.ts";
import { EstTokens } from "../devcloud/est.ts";
import { partnerClients, setGrant } from "../devcloud/grants.ts";
import { createHostile } from "../devcloud/hostile.ts";
import { createLogger } from "../log.ts";
import { installProcessGuard } from "../process-guard.ts";
import { intOption, noPositionals, parseCli, UsageError } from "./args.ts";
import { prepareStateDir, stateDirOption } from "./state-dir.ts";
import { stopRequested } from "./stop.ts";

export const usage = `usage: kerf devcloud [--port N] [--host H] [--state-dir DIR] [--token-ttl S] [--cert-ttl S] [--faults RATE [--fault-seed N]] [--tuf-dir DIR] [--log-level L]
       kerf devcloud --issue-client NAME [--state-dir DIR]
       kerf devcloud --issue-token NAME [--state-dir DIR]
       kerf devcloud --grant APP --connector ID --scope "SCOPES" [--state-dir DIR]

The reference cloud in the foreground until SIGINT or SIGTERM: HTTPS ingest that demands client
certificates from its own development CA. It prints its URL, the SPKI pin for cloud.pins and the
CA file for cloud.caFile, and the URL of its EST enrolment server for cloud.enrolment.url.

  --port N             default 0 (any free port; the URL printed says which)
  --host H             default 127.0.0.1
  --state-dir DIR      its CA, keys and data go to DIR/devcloud; default $KERF_STATE_DIR or ./.kerf
  --token-ttl S        lifetime of the access tokens its authorization server issues; default 300
  --issue-client NAME  instead of serving: write a client key and certificate for connector
                       instance NAME (for cloud.identity in its config), print their paths, exit
  --issue-token NAME   instead of serving: a new one-time EST bootstrap token for instance NAME
                       (it also lifts a lockout), written to DIR/devcloud/tokens/NAME.token for
                       kerf enroll --token-file or cloud.enrolment.tokenFile; prints the path, exits
  --grant APP          instead of serving: grant partner app APP (a client_id in DIR/devcloud/partners.json)
                       the space-separated --scope on connector --connector ID (machines:read,
                       machines:write, connector:manage, connector:update, connector:diagnostics);
                       replaces the app's grant there, --scope "" revokes it; a running devcloud
                       applies it from its next call; prints the grant, exits
  --cert-ttl SECONDS   lifetime of the certificates its EST server issues; default one year
  --faults RATE        a hostile cloud: this share (0..1) of ingest requests meets a fault (reset,
                       503 or 429 with Retry-After, 413, an answer lost after storing, a drip)
  --fault-seed N       seed of the fault generator, so a run can be repeated; default 42
  --tuf-dir DIR        serve this TUF repository (kerf release init/publish) at /tuf/metadata/
                       and /tuf/targets/, behind the same mutual TLS
  --log-level L        default info
`;

/**
 * `kerf devcloud [--port N] [--host H] [--state-dir DIR] [--faults RATE [--fault-seed N]]`:
 * the reference cloud in the foreground until SIGINT or SIGTERM. `--faults 0.25` makes it
 * hostile: a quarter of the ingest requests meet a fault (reset, 503 or 429 with Retry-After,
 * 413, an answer lost after storing, a drip), drawn from a generator seeded with
 * `--fault-seed` (default 42) so a run can be repeated; see src/devcloud/hostile.ts.
 * `--issue-client NAME` instead writes a client key and certificate for instance NAME (for
 * cloud.identity in a connector config) and exits.
 */
export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCli(
    argv,
    {
      port: { type: "string" },
      host: { type: "string" },
      "state-dir": { type: "string" },
      "issue-client": { type: "string" },
      "issue-token": { type: "string" },
      "cert-ttl": { type: "string" },
      "token-ttl": { type: "string" },
      "log-level": { type: "string" },
      faults: { type: "string" },
      "fault-seed": { type: "string" },
      "tuf-dir": { type: "string" },
      grant: { type: "string" },
      connector: { type: "string" },
      scope: { type: "string" },
    },
    "devcloud",
    usage,
  );
  noPositionals(positionals, "devcloud", usage);
  const port = intOption(values.port, "port", 0);
  const rate = values.faults === undefined ? 0 : Number(values.faults);
  if (!(rate >= 0 && rate <= 1) || values.faults?.trim() === "") throw new UsageError(`devcloud: --faults must be a share of requests between 0 and 1 (e.g. 0.25), got '${values.faults}'`, usage);
  const seed = intOption(values["fault-seed"], "fault-seed", 42);
  const tokenTtlSeconds = intOption(values["token-ttl"], "token-ttl", 300);
  if (tokenTtlSeconds < 1) throw new UsageError(`devcloud: --token-ttl must be at least 1 second, got ${tokenTtlSeconds}`, usage);
  const certTtl = values["cert-ttl"] === undefined ? undefined : intOption(values["cert-ttl"], "cert-ttl", 0);
  if (certTtl !== undefined && certTtl < 10) throw new UsageError(`devcloud: --cert-ttl must be at least 10 seconds, got '${values["cert-ttl"]}'`, usage);
  const stop = stopRequested();
  const dir = path.join(prepareStateDir(stateDirOption(values["state-dir"], ".kerf")), "devcloud");
  // Issuing prints the two file paths on stdout; keep the log out of the way unless asked.
  const issuing = values["issue-client"] !== undefined || values["issue-token"] !== undefined || values.grant !== undefined;
  const logger = createLogger({ level: values["log-level"] ?? (issuing ? "warn" : "info"), name: "devcloud" });
  installProcessGuard(logger);

  if (values["issue-client"] !== undefined) {
    const instance = values["issue-client"];
    const ca = await createDevCa(dir, "CN=Kerf Devcloud CA");
    const identity = await ensureIdentity({ dir: path.join(dir, "clients", instance), instance, enroller: new DevCaEnroller(ca), logger });
    process.stdout.write(`certificateFile: ${identity.certFile}\nprivateKeyFile: ${identity.keyFile}\n`);
    return 0;
  }

  if (values.grant !== undefined) {
    if (!values.connector || values.scope === undefined) throw new UsageError("devcloud: --grant needs --connector ID and --scope \"SCOPES\"", usage);
    checkInstanceName(values.connector);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const apps = partnerClients(dir);
    if (!apps.has(values.grant)) throw new UsageError(`devcloud: no partner app '${values.grant}' (expected one of ${[...apps.keys()].join(", ")})`, usage);
    const grant = setGrant(dir, values.grant, values.connector, values.scope.split(" ").filter((s) => s !== ""));
    process.stdout.write(grant ? `granted: ${grant.clientId} on ${grant.connector}: ${grant.scopes.join(" ")}\n` : `revoked: ${values.grant} on ${values.connector}\n`);
    return 0;
  }

  if (values["issue-token"] !== undefined) {
    const instance = values["issue-token"];
    checkInstanceName(instance);
    mkdirSync(path.join(dir, "tokens"), { recursive: true, mode: 0o700 });
    const file = path.join(dir, "tokens", `${instance}.token`);
    writeFileAtomic(file, new EstTokens(dir).issue(instance) + "\n", 0o600);
    process.stdout.write(`tokenFile: ${file}\n`);
    return 0;
  }

  const faults = rate > 0 ? { hostile: createHostile({ rate, seed }) } : {};
  const cloud = await startDevCloud({ dir, port, host: values.host ?? "127.0.0.1", logger, faults, tokenTtlSeconds, ...(values["tuf-dir"] !== undefined ? { tufDir: path.resolve(values["tuf-dir"]) } : {}), ...(certTtl !== undefined ? { certTtlSeconds: certTtl } : {}) });
  const hostile = rate > 0 ? `  faults:  ${rate} of ingest requests, seed ${seed}\n` : "";
  process.stdout.write(`devcloud: ${cloud.url}\n  pin:     ${cloud.pin}\n  CA:      ${cloud.ca.certFile}\n  EST:     ${cloud.est.url}\n  issuer:  ${cloud.auth.issuer} (for cloud.auth.issuer; tokens live ${tokenTtlSeconds} s)\n  partner: ${cloud.partner.url}/partner/v1 (apps in ${path.join(dir, "partners.json")}, grants: --grant)\n  command keys: ${cloud.commandKeysFile} (for commands.keys)\n  state:   ${dir}\n${cloud.tuf.dir ? `  TUF:     ${cloud.url}/tuf/ (${cloud.tuf.dir})\n` : ""}${hostile}`);
  await stop;
  await cloud.stop();
  return 0;
}
