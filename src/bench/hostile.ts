/**
 * Benchmark row "hostile cloud": the connector's uplink pipeline (the Sender with the product's
 * defaults, the real DurableBuffer) against the devcloud in hostile mode, a quarter of the ingest
 * requests faulted from a seeded generator (src/devcloud/hostile.ts), while a producer appends
 * 10,000 items/s the way the agent does: one batch per publish response, 1,000 items every 100 ms.
 *
 *   npx node src/bench/hostile.ts [--seconds 30] [--items-per-sec 10000] [--faults 0.25] [--seed 42] [--concurrency 2]
 *
 * Prints a table and one JSON line: offered and acknowledged items/s, the largest backlog, the
 * backlog when the producer stops and how long it then takes to drain, duplicates at the cloud,
 * items lost, and the faults by kind.
 *
 * src/bench/main.ts can run its connector against the same cloud: pass `hostileFaults()` as the
 * devcloud's `faults`, and report `faultCounts(devcloud.faults)` with the row.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { DurableBuffer } from "../buffer/buffer.ts";
import { DevCaEnroller, ensureIdentity } from "../certs/identity.ts";
import { HelpRequested, intOption, noPositionals, parseCli, UsageError } from "../cli/args.ts";
import { createHostile, FAULT_KINDS, type FaultKind } from "../devcloud/hostile.ts";
import { startDevCloud, type DevCloudFaults } from "../devcloud/server.ts";
import { silentLogger } from "../log.ts";
import type { Message } from "../message.ts";
import { Transport } from "../uplink/transport.ts";
import { Sender } from "../uplink/sender.ts";

/** The fault mix of the benchmark row: a quarter of the ingest requests, every kind alike, seed 42. */
export function hostileFaults(options: { rate?: number; seed?: number } = {}): DevCloudFaults {
  return { hostile: createHostile({ rate: options.rate ?? 0.25, seed: options.seed ?? 42 }) };
}

/** The faults a devcloud has injected so far, by kind; null when it is not hostile. */
export function faultCounts(faults: DevCloudFaults): Record<FaultKind, number> | null {
  return faults.hostile ? { ...faults.hostile.counts } : null;
}

export interface HostileBenchOptions {
  seconds: number;
  itemsPerSec: number;
  rate: number;
  seed: number;
  /** The sender's concurrency; the product's default is 2 (cloud.concurrency). */
  concurrency: number;
}

export async function runHostileBench(o: HostileBenchOptions) {
  const dir = await mkdtemp(path.join(os.tmpdir(), "kerf-bench-hostile-"));
  const logger = silentLogger();
  // Count only: the benchmark keeps its own per-item tally below.
  const cloud = await startDevCloud({ dir: path.join(dir, "devcloud"), logger, requireTokens: false, storage: "memory", keep: () => false, faults: hostileFaults(o) });
  const buffer = DurableBuffer.open({ path: path.join(dir, "buffer.db"), maxBytes: 1024 ** 3, logger });
  const identity = await ensureIdentity({ dir: path.join(dir, "identity"), instance: "bench", enroller: new DevCaEnroller(cloud.ca), logger });
  const transport = new Transport({ certPem: identity.certPem, keyPem: identity.keyPem, caPem: cloud.ca.certPem, pins: [cloud.pin], logger });
  const sender = new Sender({ store: buffer, transport, url: cloud.url, instance: "bench", concurrency: o.concurrency, maxItemsPerRequest: 5000, logger });
  try {
    const perBatch = Math.round(o.itemsPerSec / 10);
    const expected = perBatch * 10 * (o.seconds + 1);
    const seen = new Uint8Array(expected + 1);
    let duplicates = 0;
    cloud.store.onBatch((b) => {
      if (b.duplicate) return;
      for (const m of b.messages) {
        if (m.kind !== "data") continue;
        for (const item of m.items) {
          const v = item.v as number;
          if (seen[v]! > 0) duplicates++;
          seen[v] = 1;
        }
      }
    });

    let seq = 0;
    const batch = (): Message[] => {
      const t = new Date().toISOString();
      const items = Array.from({ length: perBatch }, (_, i) => ({ key: `load.${String(i).padStart(5, "0")}`, v: ++seq, q: 0, t }));
      return [{ kind: "data", machine: "bench", items }];
    };
    sender.start();
    const started = Date.now();
    let batches = 0;
    let maxBacklog = 0;
    let nextReport = 5000;
    const windowMs = o.seconds * 1000;
    // Every 100 ms, as many batches as are due (a busy event loop must not lower the offered load).
    await new Promise<void>((resolve) => {
      const tick = setInterval(() => {
        const elapsed = Date.now() - started;
        const due = Math.min(Math.floor(elapsed / 100), o.seconds * 10);
        while (batches < due) {
          buffer.append(batch());
          batches++;
          sender.wake();
        }
        const backlog = buffer.stats().items;
        maxBacklog = Math.max(maxBacklog, backlog);
        if (elapsed >= nextReport) {
          nextReport += 5000;
          process.stderr.write(`hostile bench: ${Math.round(elapsed / 1000)} s, backlog ${backlog} items, acknowledged ${sender.stats().ackedItems}\n`);
        }
        if (elapsed >= windowMs) {
          clearInterval(tick);
          resolve();
        }
      }, 100);
    });
    const windowEnd = Date.now();
    const ackedInWindow = sender.stats().ackedItems;
    const backlogAtEnd = buffer.stats().items;
    const drained = await sender.drain(120_000);
    const drainMs = Date.now() - windowEnd;
    await sender.stop();

    let delivered = 0;
    for (let v = 1; v <= seq; v++) delivered += seen[v]!;
    const stats = buffer.stats();
    const counts = cloud.store.counts();
    return {
      scenario: `hostile cloud (${o.rate} of requests faulted, seed ${o.seed})`,
      windowSeconds: o.seconds,
      concurrency: o.concurrency,
      offeredPerSec: Math.round(seq / ((windowEnd - started) / 1000)),
      acknowledgedPerSec: Math.round(ackedInWindow / ((windowEnd - started) / 1000)),
      maxBacklogItems: maxBacklog,
      backlogAtEndItems: backlogAtEnd,
      drainedAfterMs: drained ? drainMs : null,
      duplicateItems: duplicates + counts.duplicateItems,
      duplicateBatches: counts.duplicateBatches,
      lost: seq - delivered - stats.items - stats.droppedItems,
      droppedItems: stats.droppedItems,
      requests: counts.requests,
      peakInFlight: cloud.inFlight.peak,
      retries: sender.stats().retries,
      splits: sender.stats().splits,
      faults: faultCounts(cloud.faults),
    };
  } finally {
    await sender.stop();
    await transport.close();
    buffer.close();
    await cloud.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const usage = "usage: npx node src/bench/hostile.ts [--seconds 30] [--items-per-sec 10000] [--faults 0.25] [--seed 42] [--concurrency 2]\n";
  let options: HostileBenchOptions;
  try {
    const { values, positionals } = parseCli(
      process.argv.slice(2),
      { seconds: { type: "string" }, "items-per-sec": { type: "string" }, faults: { type: "string" }, seed: { type: "string" }, concurrency: { type: "string" } },
      "hostile bench",
      usage,
    );
    noPositionals(positionals, "hostile bench", usage);
    const rate = Number(values.faults ?? 0.25);
    if (!(rate >= 0 && rate <= 1) || values.faults?.trim() === "") throw new UsageError(`--faults must be a share of requests between 0 and 1, got '${values.faults}'`, usage);
    options = {
      seconds: intOption(values.seconds, "seconds", 30),
      itemsPerSec: intOption(values["items-per-sec"], "items-per-sec", 10_000),
      rate,
      seed: intOption(values.seed, "seed", 42),
      concurrency: intOption(values.concurrency, "concurrency", 2),
    };
  } catch (err) {
    if (err instanceof HelpRequested) {
      process.stdout.write(err.usage);
      process.exit(0);
    }
    process.stderr.write(`${(err as Error).message}\n${usage}`);
    process.exit(2);
  }
  const result = await runHostileBench(options);
  const width = Math.max(...Object.keys(result).map((k) => k.length));
  for (const [k, v] of Object.entries(result)) {
    const text = k === "faults" && v ? FAULT_KINDS.map((kind) => `${kind} ${(v as Record<FaultKind, number>)[kind]}`).join(", ") : String(v);
    process.stdout.write(`${k.padEnd(width)}  ${text}\n`);
  }
  process.stdout.write(JSON.stringify(result) + "\n");
  process.exit(0);
}
