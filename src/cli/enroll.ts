import { readFileSync } from "node:fs";
import path from "node:path";
import { bootstrapIdentity } from "../certs/enrol.ts";
import { resolveProxy } from "../uplink/proxy.ts";
import { loadConfig } from "../config/load.ts";
import { KerfError } from "../errors.ts";
import { createLogger } from "../log.ts";
import { noPositionals, parseCli, UsageError } from "./args.ts";
import { configOption, prepareStateDir, stateDirOption } from "./state-dir.ts";

export const usage = `usage: kerf enroll --token-file FILE [--config FILE] [--state-dir DIR]

Enrols this instance with the cloud over EST (RFC 7030) at installation time: creates the
instance key in <state-dir>/identity (mode 0600; it never leaves that directory), sends a
certificate request to cloud.enrolment.url with the one-time bootstrap token, checks the
certificate it gets and installs it. An instance that already has a valid certificate keeps it
and its token is not spent. After an expired certificate, this is the way back (with a new token).

  --token-file FILE  the one-time bootstrap token from the cloud administrator
                     (devcloud: kerf devcloud --issue-token INSTANCE)
  --config FILE      the connector config (instance, cloud.enrolment, cloud.pins); default
                     $KERF_CONFIG or /etc/kerf/kerf.yaml, as for kerf run
  --state-dir DIR    default $KERF_STATE_DIR or /var/lib/kerf
`;

/** `kerf enroll --token-file F`: the bootstrap enrolment, as `kerf run` does it on a first start. */
export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCli(argv, { "token-file": { type: "string" }, config: { type: "string" }, "state-dir": { type: "string" } }, "enroll", usage);
  noPositionals(positionals, "enroll", usage);
  if (values["token-file"] === undefined) throw new UsageError("enroll: --token-file is required", usage);
  const loaded = await loadConfig(configOption(values.config));
  const { config } = loaded;
  const enrolment = config.cloud.enrolment;
  if (!enrolment) throw new KerfError("CONFIG_INVALID", `${loaded.file}: cloud.enrolment is not set: kerf enroll needs its url (the cloud's EST base, e.g. https://cloud.example.com/.well-known/est)`);
  const stateDir = prepareStateDir(stateDirOption(values["state-dir"]));
  const logger = createLogger({ level: process.env.KERF_LOG_LEVEL ?? "warn", destination: 2 });
  const identity = await bootstrapIdentity({
    dir: path.join(stateDir, "identity"),
    instance: config.instance,
    url: enrolment.url,
    tokenFile: path.resolve(values["token-file"]),
    keyType: enrolment.keyType,
    pins: config.cloud.pins,
    caPem: config.cloud.caFile ? readFileSync(config.cloud.caFile, "utf8") : undefined,
    proxy: resolveProxy(config.cloud.proxy, loaded.secrets.proxy),
    // the operator runs it on purpose, also with a token the cloud refused before
    retryRefusedToken: true,
    logger,
  });
  process.stdout.write(
    `enrolled: instance ${config.instance} (instance id ${identity.instanceId})\n  certificate: ${identity.certFile}\n  valid until: ${identity.notAfter.toISOString()}\n  key:         ${identity.keyFile} (mode 0600)\n`,
  );
  return 0;
}
