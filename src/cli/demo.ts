import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Agent } from "../agent/agent.ts";
import { loadConfig } from "../config/load.ts";
import { setupDemo, type Demo } from "../demo/setup.ts";
import { runUpdateScenario, scenarioPassed } from "../demo/update-scenario.ts";
import { createLogger } from "../log.ts";
import { installProcessGuard } from "../process-guard.ts";
import { routeOpcuaLogging } from "../opcua/logging.ts";
import type { StoredBatch } from "../message.ts";
import { intOption, noPositionals, parseCli, UsageError } from "./args.ts";
import { prepareStateDir } from "./state-dir.ts";
import { stopRequested } from "./stop.ts";
import { partnerScenario } from "../demo/partner.ts";

export const usage = `usage: kerf demo [--scenario S] [--seconds N] [--token-ttl S] [--cert-ttl S] [--state-dir DIR] [--log-level L] [--quiet]

Starts a simulated woodworking machine, the reference cloud and the connector on loopback, and
prints values as the cloud acknowledges them. Ctrl-C (or SIGTERM) stops everything it started and
removes its temporary directory.

  --scenario S     values (default): values flow until stopped.
                   update: the connector runs under its launcher (kerf launch); partway the demo
                   publishes a new signed version, the connector finds, installs and health-gates
                   it while values keep flowing; ends 5 s after the outcome.
                   bad-update: the same with a tampered release, which is refused.
                   partner: values flow, and examples/partner-app.ts runs against the cloud (a
                   partner app: token, connectors, latest values, a mapping change), then a write
                   the connector's local policy forbids and a command from an app without a
                   grant; the summary counts commandsAccepted and commandsRefused.
  --seconds N      stop after N seconds and print one JSON summary line (exit 0 when clean);
                   for update and bad-update an upper bound (default 240)
  --cert-ttl S     the devcloud issues instance certificates valid for S seconds (at least 10), so
                   that the connector renews them over EST while values flow (at 2/3 of the lifetime)
  --state-dir DIR  keep all state in DIR (kept afterwards); default a temporary directory
  --token-ttl S    lifetime of the cloud's access tokens in seconds, default 300; the connector
                   renews each when about 75 % of it has passed
  --log-level L    default warn
  --quiet          no value lines, only the summary
`;

/**
 * `kerf demo [--seconds N] [--state-dir DIR]`: simulated machine, reference cloud and
 * connector on loopback, printing values as the cloud acknowledges them. With
 * --seconds it stops by itself and prints one JSON summary line.
 */
export async function run(argv: string[]): Promise<number> {
  const started = performance.now();
  const { values, positionals } = parseCli(
    argv,
    { scenario: { type: "string" }, seconds: { type: "string" }, "token-ttl": { type: "string" }, "cert-ttl": { type: "string" }, "state-dir": { type: "string" }, "log-level": { type: "string" }, quiet: { type: "boolean" } },
    "demo",
    usage,
  );
  noPositionals(positionals, "demo", usage);
  const scenario = values.scenario ?? "values";
  if (scenario !== "values" && scenario !== "update" && scenario !== "bad-update" && scenario !== "partner") throw new UsageError(`demo: --scenario must be values, update, bad-update or partner, got '${scenario}'`, usage);
  const seconds = intOption(values.seconds, "seconds", scenario === "update" || scenario === "bad-update" ? 240 : 0);
  const partner = scenario === "partner";
  const tokenTtl = values["token-ttl"] === undefined ? undefined : intOption(values["token-ttl"], "token-ttl", 300);
  if (tokenTtl !== undefined && tokenTtl < 1) throw new UsageError(`demo: --token-ttl must be at least 1 second, got ${tokenTtl}`, usage);
  const certTtl = values["cert-ttl"] === undefined ? undefined : intOption(values["cert-ttl"], "cert-ttl", 0);
  if (certTtl !== undefined && certTtl < 10) throw new UsageError(`demo: --cert-ttl must be at least 10 seconds, got '${values["cert-ttl"]}'`, usage);
  // From here on a Ctrl-C is ours to handle: whatever has been started by then is stopped again.
  const stop = stopRequested();
  const keepState = values["state-dir"] !== undefined;
  const stateDir = keepState ? prepareStateDir(path.resolve(values["state-dir"]!)) : await mkdtemp(path.join(os.tmpdir(), "kerf-demo-"));
  const note = (line: string) => process.stderr.write(`demo: ${line}\n`);
  note(`starting in ${stateDir}${keepState ? "" : " (removed when the demo ends)"}`);
  const logger = createLogger({ level: values["log-level"] ?? "warn" });
  installProcessGuard(logger);
  routeOpcuaLogging(logger);
  const out = (line: string) => {
    if (!values.quiet) process.stdout.write(line + "\n");
  };

  const aborted = new AbortController();
  void stop.then((reason) => aborted.abort(new Error(`stopped by ${reason}`)));
  let demo: Demo | undefined;
  let agent: Agent | null = null;
  try {
    try {
      demo = await setupDemo({
        stateDir,
        logger,
        out,
        signal: aborted.signal,
        stopped: (what) => note(`stopped ${what}`),
        ...(tokenTtl !== undefined ? { tokenTtlSeconds: tokenTtl } : {}),
        ...(certTtl !== undefined ? { certTtlSeconds: certTtl } : {}),
        ...(partner ? { commands: true } : {}),
      });
    } catch (err) {
      if (!aborted.signal.aborted) throw err;
      note(`${(aborted.signal.reason as Error).message} during setup`);
      return 130;
    }
    if (scenario === "update" || scenario === "bad-update") {
      let timer: NodeJS.Timeout | undefined;
      const ends = Promise.race([stop, new Promise<string>((resolve) => (timer = setTimeout(() => resolve(`--seconds ${seconds}`), seconds * 1000)))]);
      const result = await runUpdateScenario({ demo, stateDir, scenario, stop: ends, afterSeconds: 5, note, out }).finally(() => clearTimeout(timer));
      note("stopped the connector");
      process.stdout.write(`${JSON.stringify({ scenario, ...result, securityMode: demo.securityMode, securityPolicy: demo.securityPolicy, seconds: Math.round((performance.now() - started) / 100) / 10 })}\n`);
      return scenarioPassed(scenario, result) ? 0 : 1;
    }
    const loaded = await loadConfig(demo.configFile);
    agent = new Agent({ loaded, stateDir: demo.connectorStateDir, logger });
    let firstAckMs: number | null = null;
    const printer = valuePrinter(out, demo.units);
    await agent.start();
    agent.sender!.on("acked", (batch: StoredBatch) => {
      firstAckMs ??= Math.round(performance.now() - started);
      printer(batch);
    });
    out(`demo: connector started (${demo.securityMode}/${demo.securityPolicy}); values print as the cloud acknowledges them${seconds ? "" : "; Ctrl-C stops"}`);
    const cloudRefusals = partner ? await partnerScenario(demo, note) : 0;

    let timer: NodeJS.Timeout | undefined;
    const reason = await Promise.race([stop, new Promise<string>((resolve) => (timer = seconds ? setTimeout(() => resolve(`--seconds ${seconds}`), seconds * 1000) : undefined))]);
    clearTimeout(timer);
    note(`stopping (${reason})`);

    const certificate = agent.renewal?.health();
    const commands = agent.commands.health(Date.now()).commands;
    const final = await agent.stop({ drainMs: 5_000 });
    agent = null;
    note("stopped the connector");
    const stats = final.buffer;
    const sender = final.uplink!;
    const cloud = demo.devcloud.store.counts();
    const summary = {
      sent: sender.sentItems,
      acknowledged: stats.ackedItems,
      buffered: stats.items,
      dropped: stats.droppedItems,
      duplicates: cloud.duplicateItems,
      appended: stats.appendedItems,
      cloudItems: cloud.items,
      tokenRenewals: final.tokens?.renewals ?? 0,
      securityMode: demo.securityMode,
      securityPolicy: demo.securityPolicy,
      firstAckMs,
      certificateRenewals: certificate?.renewals ?? 0,
      certificateExpiresAt: certificate?.notAfter ?? null,
      seconds: Math.round((performance.now() - started) / 100) / 10,
      ...(partner ? { commandsAccepted: commands?.accepted ?? 0, commandsRefused: (commands?.refused ?? 0) + cloudRefusals } : {}),
    };
    process.stdout.write(JSON.stringify(summary) + "\n");
    return summary.acknowledged > 0 && summary.dropped === 0 && summary.duplicates === 0 ? 0 : 1;
  } finally {
    if (agent) {
      await agent.stop().catch(() => undefined);
      note("stopped the connector");
    }
    await demo?.stop();
    if (!keepState) {
      await rm(stateDir, { recursive: true, force: true });
      note(`removed ${stateDir}`);
    }
  }
}

/** One line per acknowledged batch: the newest value of each key in it, at most a few keys wide. */
function valuePrinter(out: (line: string) => void, units: Record<string, string>) {
  let lastPrint = 0;
  let skipped = 0;
  return (batch: StoredBatch) => {
    const now = Date.now();
    if (now - lastPrint < 250) {
      skipped += batch.items;
      return;
    }
    lastPrint = now;
    for (const m of batch.messages) {
      if (m.kind === "status") out(`ack  ${m.machine}  status ${m.state}${m.reason ? ` (${m.reason})` : ""}`);
      else if (m.kind === "event") out(`ack  ${m.machine}  event ${m.key} ${JSON.stringify(m.fields).slice(0, 120)}`);
      else {
        const shown = m.items.slice(0, 4).map((i) => `${i.key}=${format(i.v)}${units[i.key] ? " " + units[i.key] : ""}`);
        const more = m.items.length - shown.length + skipped;
        out(`ack  ${m.machine}  ${shown.join("  ")}${more > 0 ? `  (+${more} more)` : ""}`);
      }
    }
    skipped = 0;
  };
}

function format(v: unknown): string {
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(2);
  return JSON.stringify(v);
}
