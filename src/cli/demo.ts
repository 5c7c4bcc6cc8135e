import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Agent } from "../agent.ts";
import { loadConfig } from "../config/load.ts";
import { setupDemo } from "../demo/setup.ts";
import { createLogger } from "../log.ts";
import { routeOpcuaLogging } from "../opcua/logging.ts";
import type { StoredBatch } from "../buffer/buffer.ts";
import { intOption, parseCli } from "./args.ts";

/**
 * `kerf demo [--seconds N] [--state-dir DIR]`: simulated machine, reference cloud and
 * connector on loopback, printing values as the cloud acknowledges them. With
 * --seconds it stops by itself and prints one JSON summary line.
 */
export async function run(argv: string[]): Promise<number> {
  const started = performance.now();
  const { values } = parseCli(
    argv,
    { seconds: { type: "string" }, "state-dir": { type: "string" }, "log-level": { type: "string" }, quiet: { type: "boolean" } },
    "demo",
  );
  const seconds = intOption(values.seconds, "seconds", 0);
  const keepState = values["state-dir"] !== undefined;
  const stateDir = path.resolve(values["state-dir"] ?? (await mkdtemp(path.join(os.tmpdir(), "kerf-demo-"))));
  const logger = createLogger({ level: values["log-level"] ?? "warn" });
  routeOpcuaLogging(logger);
  const out = (line: string) => {
    if (!values.quiet) process.stdout.write(line + "\n");
  };

  const demo = await setupDemo({ stateDir, logger, out });
  let agent: Agent | null = null;
  try {
    const loaded = await loadConfig(demo.configFile);
    agent = new Agent({ loaded, stateDir: demo.connectorStateDir, logger, enroller: demo.enroller });
    let firstAckMs: number | null = null;
    const printer = valuePrinter(out, demo.units);
    await agent.start();
    agent.sender!.on("acked", (batch: StoredBatch) => {
      firstAckMs ??= Math.round(performance.now() - started);
      printer(batch);
    });
    out(`demo: connector started (${demo.securityMode}/${demo.securityPolicy}); values print as the cloud acknowledges them${seconds ? "" : "; Ctrl-C stops"}`);

    await new Promise<void>((resolve) => {
      const timer = seconds ? setTimeout(resolve, seconds * 1000) : null;
      const stop = () => {
        if (timer) clearTimeout(timer);
        resolve();
      };
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });

    const final = await agent.stop({ drainMs: 5_000 });
    const stats = final.buffer;
    const sender = final.uplink!;
    const cloud = demo.devcloud.store.counts();
    agent = null;
    const summary = {
      sent: sender.sentItems,
      acknowledged: stats.ackedItems,
      buffered: stats.items,
      dropped: stats.droppedItems,
      duplicates: cloud.duplicateItems,
      appended: stats.appendedItems,
      cloudItems: cloud.items,
      securityMode: demo.securityMode,
      securityPolicy: demo.securityPolicy,
      firstAckMs,
      seconds: Math.round((performance.now() - started) / 100) / 10,
    };
    process.stdout.write(JSON.stringify(summary) + "\n");
    return summary.acknowledged > 0 && summary.dropped === 0 && summary.duplicates === 0 ? 0 : 1;
  } finally {
    await agent?.stop().catch(() => undefined);
    await demo.stop();
    if (!keepState) await rm(stateDir, { recursive: true, force: true });
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
