import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { judgeHealth } from "../agent/health.ts";
import { loadIdentityFiles } from "../certs/files.ts";
import { loadIdentity } from "../certs/identity.ts";
import { loadConfig, type LoadedConfig } from "../config/load.ts";
import { KerfError } from "../errors.ts";
import { createLogger, type Logger } from "../log.ts";
import { readLastCheck, runUpdateCheck, type CheckReport } from "../update/checker.ts";
import { writeInstallRequest } from "../update/install-request.ts";
import { readJournal, readPointer } from "../update/pointer.ts";
import { lockHolder } from "../update/schedule.ts";
import { describePins, pinsInEffect } from "../update/signed-pins.ts";
import { appVersion } from "../update/version.ts";
import { resolveProxy } from "../uplink/proxy.ts";
import { Transport } from "../uplink/transport.ts";
import { UsageError, parseCli } from "./args.ts";
import { configOption, stateDirOption } from "./state-dir.ts";

export const usage = `usage: kerf update status [--state-dir DIR] [--json]
       kerf update check [--config FILE] [--state-dir DIR] [--json]
       kerf update apply [--config FILE] [--state-dir DIR] [--force] [--json]

status  the active and previous app versions, whether the active one is on trial (its health
        gate), the last check of the signed channel, the last update outcome with its reason,
        and the last update steps.
check   one check of the signed channel now, as kerf run does it (over the pinned uplink, the
        mirror when that fails); a newer release is downloaded and unpacked, not installed.
        Exit 0 when a release is available or the connector is up to date, 1 when refused or failed.
apply   check, then ask the launcher (kerf launch) to install a newer release now, also with
        update.apply: manual and outside the maintenance window; the update lock still holds it
        back unless --force.

  --config FILE     the connector config; default $KERF_CONFIG or /etc/kerf/kerf.yaml
  --state-dir DIR   the connector's state directory; default $KERF_STATE_DIR or /var/lib/kerf
  --force           apply even while the update lock is held
  --json            one JSON object instead of text
`;

/** `kerf update status|check|apply`. */
export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCli(argv, { config: { type: "string" }, "state-dir": { type: "string" }, json: { type: "boolean" }, force: { type: "boolean" } }, "update", usage);
  const sub = positionals[0];
  if (positionals.length !== 1 || !["status", "check", "apply"].includes(sub!)) throw new UsageError(sub === undefined ? "missing the subcommand" : `unknown subcommand '${positionals.join(" ")}'`, usage);
  const stateDir = stateDirOption(values["state-dir"]);
  if (sub === "status") return status(stateDir, values.json === true);
  const loaded = await loadConfig(configOption(values.config));
  if (!loaded.config.update) throw new KerfError("CONFIG_INVALID", `${loaded.file}: self-update is off: the config has no update section`);
  const logger = createLogger({ level: process.env.KERF_LOG_LEVEL ?? "warn", destination: 2 });
  const report = await check(loaded, stateDir, logger);
  const out = (text: string, extra: Record<string, unknown> = {}) => process.stdout.write(values.json ? JSON.stringify({ ...report, ...extra }) + "\n" : text + "\n");
  const line = describeReport(report);
  if (sub === "check" || report.outcome !== "available") {
    out(sub === "apply" && report.outcome === "up-to-date" ? `${line}: nothing to apply` : line);
    return report.outcome === "available" || report.outcome === "up-to-date" ? 0 : 1;
  }
  // apply: the maintenance window and apply: manual are for automatic installs; the lock protects a running job.
  const held = holder(loaded, stateDir);
  if (held && !values.force) {
    out(`${line}; not requested: the update lock is held: ${held} (--force installs anyway)`, { requested: false, lock: held });
    return 1;
  }
  const file = writeInstallRequest(stateDir, report.bundle!);
  const agent = judgeHealth(stateDir);
  const launcher = agent.status !== "not running" && agent.report?.update?.underLauncher === true;
  const next = launcher
    ? "the launcher installs it within seconds (kerf update status shows the outcome)"
    : `no launcher is running (the connector ${agent.status === "not running" ? "is not running" : "runs without kerf launch"}): the request waits in ${file} until kerf launch starts`;
  out(`${line}; install requested: ${next}`, { requested: true, file, launcher });
  return 0;
}

function describeReport(r: CheckReport): string {
  const pins = r.pinsChanged ? " (a new signed uplink pin set was stored; kerf run uses it from its next check or start)" : "";
  if (r.outcome === "available") return `available: ${r.version} (via ${r.via}), unpacked in ${r.bundle?.dir}${pins}`;
  if (r.outcome === "up-to-date") return `up-to-date: ${r.version} (via ${r.via})${pins}`;
  return `${r.outcome}: ${r.reason}`;
}

/** One check with the connector's identity and pins, under the check lock that the running agent takes too. */
async function check(loaded: LoadedConfig, stateDir: string, logger: Logger): Promise<CheckReport> {
  const { config } = loaded;
  let identity: { certPem: string; keyPem: string };
  if (config.cloud.identity) identity = await loadIdentityFiles(config.cloud.identity.certificateFile, config.cloud.identity.privateKeyFile);
  else {
    const found = loadIdentity(path.join(stateDir, "identity"), config.instance, logger);
    if (!("certPem" in found)) throw new KerfError("CERT_ENROLMENT", `no usable instance certificate in ${stateDir}: ${found.problem} (kerf run enrols on its first start; or kerf enroll)`);
    identity = found;
  }
  const caPem = config.cloud.caFile ? readFileSync(config.cloud.caFile, "utf8") : undefined;
  const proxy = resolveProxy(config.cloud.proxy, loaded.secrets.proxy);
  const pins = pinsInEffect(config, stateDir);
  logger.info(`uplink pins: ${describePins(pins)}`);
  const common = { certPem: identity.certPem, keyPem: identity.keyPem, caPem, proxy, connections: 1 };
  const transport = new Transport({ ...common, pins: pins.pins, logger });
  try {
    return await runUpdateCheck({
      stateDir,
      update: config.update!,
      cloudUrl: config.cloud.url,
      transport,
      mirrorTransport: () => new Transport({ ...common, pins: [], unpinned: true, logger }),
      runningVersion: appVersion(),
      logger,
      requestTimeoutMs: config.cloud.requestTimeoutMs,
      lockWaitMs: 120_000,
    });
  } finally {
    await transport.close().catch(() => undefined);
  }
}

/**
 * Why the update lock is held: the lock file here; machine values only the running connector
 * knows (its health report), so without one they count as unknown, which holds the lock.
 */
function holder(loaded: LoadedConfig, stateDir: string): string | null {
  const lock = loaded.config.update?.lock;
  if (!lock) return null;
  if (!lock.values?.length) return lockHolder(lock, { exists: existsSync, latest: () => undefined });
  const agent = judgeHealth(stateDir);
  if (agent.status === "not running") return lockHolder({ ...lock, values: [] }, { exists: existsSync, latest: () => undefined }) ?? "the connector is not running, so the machine values that hold the update lock are unknown";
  return agent.report?.update?.lock ?? null;
}

function status(stateDir: string, json: boolean): number {
  const pointer = readPointer(stateDir, appVersion());
  const steps = readJournal(stateDir).slice(-5);
  const lastCheck = readLastCheck(stateDir);
  if (json) {
    process.stdout.write(JSON.stringify({ ...pointer, lastCheck, steps }) + "\n");
    return 0;
  }
  const ref = (r: { slot: string; version: string } | null) => (r ? `${r.version} (slot ${r.slot})` : "none");
  const o = pointer.lastOutcome;
  process.stdout.write(
    [
      `active:   ${ref(pointer.active)}${pointer.trial ? `, on trial since ${pointer.trial.since} (started ${pointer.trial.starts} times)` : ""}`,
      `previous: ${ref(pointer.previous)}`,
      `last check:   ${lastCheck ? `${lastCheck.at} ${describeReport(lastCheck)}` : "none"}`,
      `last outcome: ${o ? `${o.kind} ${o.version} at ${o.at}${o.reason ? `: ${o.reason}` : ""}` : "none"}`,
      ...steps.map((s) => `  ${s.at} ${s.step} ${s.version}${s.reason ? `: ${s.reason}` : ""}`),
    ].join("\n") + "\n",
  );
  return 0;
}
