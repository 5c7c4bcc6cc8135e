/**
 * The chaos run: `kerf run` as a child process against the simulator's load counters and a
 * devcloud, through an uplink proxy the run controls, while it kills the connector with SIGKILL,
 * cuts, hangs, slows and resets the uplink, restarts the simulator, steps the connector's wall
 * clock and fills its buffer to the cap. Then it accounts for every value (tally.ts).
 *
 * The devcloud and the simulator run in this process (the simulator's counter value is read
 * directly; the cloud's store reports each stored batch), the connector in its own.
 */
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parse, stringify } from "yaml";
import { DurableBuffer } from "../buffer/buffer.ts";
import { writeDemoConfig, DEMO_INSTANCE, DEMO_MACHINE } from "../demo/setup.ts";
import { startDevCloud, type DevCloud } from "../devcloud/index.ts";
import { parseSize } from "../config/size.ts";
import { silentLogger } from "../log.ts";
import { openClientPki } from "../opcua/trust/pki.ts";
import { startSimulator, type Simulator } from "../simulator/server.ts";
import { seededRandom } from "../simulator/simulation.ts";
import { killAndConfirm, startChaosConnector, stopGracefully, type ChaosConnector } from "./connector.ts";
import { Deliveries, tally, type Tally, type TallyInput, type Window } from "./tally.ts";
import { startUplinkProxy, type UplinkProxy } from "./uplink-proxy.ts";

export interface ChaosOptions {
  counters: number;
  periodMs: number;
  /** SIGKILLs of the connector, at least. */
  kills: number;
  /** How many times each other fault (cut, black hole, slow, reset, simulator restart, clock step) happens. */
  faultsEach: number;
  /** Random pause before each fault, milliseconds [least, most]. */
  pauseMs: readonly [number, number];
  /** Fill the buffer to its cap once (see fillBuffer). */
  fillBuffer: boolean;
  bufferMaxBytes: string;
  seed: number;
  /** See TallyInput.slackMs. */
  slackMs: number;
  /** Progress lines (the suite's own, not the connector's). */
  say: (line: string) => void;
}

export const PRESETS = {
  full: { counters: 1000, periodMs: 100, kills: 20, faultsEach: 2, fillBuffer: true, pauseMs: [500, 2500] },
  quick: { counters: 200, periodMs: 100, kills: 6, faultsEach: 1, fillBuffer: true, pauseMs: [500, 2500] },
  test: { counters: 50, periodMs: 100, kills: 3, faultsEach: 1, fillBuffer: true, pauseMs: [300, 1200] },
} as const;

export interface ChaosResult extends Tally {
  /** What made the run fail besides the tally: kills that did not happen, a connector that died by itself, a stop that was not clean. */
  failures: string[];
  faults: Record<string, number>;
  seconds: number;
  /** The connectors' WARN and ERROR lines (the first 20 of each process). */
  warnings: string[];
  /** What the tally was computed from: a test can change it and tally again, to see a check fail. */
  input: TallyInput;
}

/** The reason of the filler status messages (see fillBuffer). */
const FILLER = "chaos filler ";

type Fault = "kill" | "cut" | "black-hole" | "slow" | "reset" | "simulator" | "clock";

export async function runChaos(o: ChaosOptions): Promise<ChaosResult> {
  const started = Date.now();
  const random = seededRandom(o.seed);
  const between = (lo: number, hi: number) => lo + random() * (hi - lo);
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const dir = await mkdtemp(path.join(os.tmpdir(), "kerf-chaos-"));
  const logger = silentLogger();
  const failures: string[] = [];
  const faults: Record<string, number> = {};
  const blind: Window[] = [];
  const openBlind: { from: number; why: string }[] = [];
  const dropWindows: Window[] = [];
  const restartValues = new Set<number>();
  const simRestarts: { from: number; value: number }[] = [];
  const deliveries = new Deliveries(o.counters);
  // When each value was published: sampled here every 20 ms (a little late, never early); the
  // source time any counter's copy at the cloud carries replaces the sample where there is one.
  const sampled = new Map<number, number>();
  const sampler = setInterval(() => {
    const v = sim?.loadValue;
    if (v !== undefined && !sampled.has(v)) sampled.set(v, Date.now());
  }, 20);
  const tickCache = new Map<number, number>();
  const tickTime = (v: number): number | undefined => {
    if (tickCache.has(v)) return tickCache.get(v);
    let t: number | undefined;
    for (let c = 0; c < o.counters && t === undefined; c++) if (deliveries.has(c, v)) t = deliveries.time(c, v);
    // a value the sampler missed (a busy event loop): the next sample is no earlier than it
    for (let next = v; t === undefined && next < v + 1000; next++) t = sampled.get(next);
    if (t !== undefined) tickCache.set(v, t);
    return t;
  };
  const clockFile = path.join(dir, "clock-shift-ms");
  writeFileSync(clockFile, "0");
  let devcloud: DevCloud | undefined;
  let sim: Simulator | undefined;
  let proxy: UplinkProxy | undefined;
  let connector: ChaosConnector | undefined;
  let kills = 0;
  const filler = { appended: 0, delivered: 0, buffered: 0 };
  const bufferMaxBytes = parseSize(o.bufferMaxBytes) ?? Number.NaN;
  if (!(bufferMaxBytes > 0)) throw new Error(`chaos: buffer size ${o.bufferMaxBytes} is not a size (e.g. 1MiB)`);

  const closeBlind = (at: number) => {
    for (const w of openBlind.splice(0)) blind.push({ from: w.from, to: at, why: w.why });
  };
  const connectors: ChaosConnector[] = [];
  const warnings: string[] = [];
  const start = () => {
    connector = startChaosConnector({ configFile, stateDir, clockFile, onSubscribed: closeBlind });
    connectors.push(connector);
    return connector;
  };
  // The newest value the cloud has of every counter (slowest counter).
  const cloudLow = () => {
    let low = Number.POSITIVE_INFINITY;
    for (let c = 0; c < o.counters; c++) low = Math.min(low, deliveries.range(c)?.last ?? -1);
    return low;
  };
  const waitUntil = async (what: string, check: () => boolean, timeoutMs: number) => {
    const deadline = Date.now() + timeoutMs;
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`chaos: timed out after ${timeoutMs} ms waiting for ${what}; the connector's warnings:\n${connector?.errors.join("\n")}`);
      if (connector && (connector.child.exitCode !== null || connector.child.signalCode !== null)) {
        throw new Error(`chaos: the connector exited by itself (code ${connector.child.exitCode}) while waiting for ${what}\n${connector.stderr()}${connector.errors.join("\n")}`);
      }
      await sleep(100);
    }
  };

  let configFile = "";
  const stateDir = path.join(dir, "connector");
  const simOptions = (startAt: number, port: number) => ({
    pkiDir: path.join(dir, "simulator-pki"),
    port,
    logger,
    load: { count: o.counters, periodMs: o.periodMs, start: startAt },
  });
  try {
    devcloud = await startDevCloud({ dir: path.join(dir, "devcloud"), logger, storage: "memory", keep: () => false });
    devcloud.store.onBatch((b) => {
      if (b.duplicate) return;
      for (const m of b.messages) {
        if (m.kind === "status" && m.reason?.startsWith(FILLER)) filler.delivered++;
        if (m.kind !== "data" || m.machine !== DEMO_MACHINE) continue;
        for (const item of m.items) {
          if (!item.key.startsWith("load.")) continue;
          if (item.hb) deliveries.heartbeats++;
          else deliveries.add(Number(item.key.slice(5)), Number(item.v), Date.parse(item.t));
        }
      }
    });
    proxy = await startUplinkProxy(devcloud.port);
    sim = await startSimulator(simOptions(0, 0));
    const simPort = sim.port;

    // Trust both ways, as setupDemo does.
    const pki = await openClientPki({ dir: path.join(stateDir, "pki"), instance: DEMO_INSTANCE, logger });
    await pki.certificateManager.trustCertificate(sim.certificateDer);
    await sim.trustClientCertificate(pki.certificateDer);
    await pki.certificateManager.dispose();
    ({ configFile } = await writeDemoConfig({
      dir: path.join(dir, "config"),
      endpointUrl: sim.endpointUrl,
      // The uplink goes through the proxy; tokens and enrolment go straight to the devcloud.
      devcloud: { ...devcloud, url: `https://127.0.0.1:${proxy.port}` },
      securityMode: "SignAndEncrypt",
      securityPolicy: "Aes256_Sha256_RsaPss",
      enrolment: { url: devcloud.est.url, token: devcloud.est.issueBootstrapToken(DEMO_INSTANCE) },
      load: { count: o.counters, periodMs: o.periodMs },
    }));
    // Only the load counters: every item in the buffer is then a value the tally can name.
    const mappingFile = path.join(path.dirname(configFile), "mapping.yaml");
    const mapping = parse(readFileSync(mappingFile, "utf8")) as { machines: Record<string, { groups: { name: string }[] }> };
    const machine = mapping.machines[DEMO_MACHINE]!;
    machine.groups = machine.groups.filter((g) => g.name === "load");
    writeFileSync(mappingFile, stringify(mapping));
    const config = parse(readFileSync(configFile, "utf8")) as Record<string, any>;
    config.log = { level: "info" };
    // The tokens' audience stays the devcloud's own URL, which the proxy stands in front of.
    config.cloud.auth.resource = devcloud.url;
    config.buffer = { maxBytes: o.bufferMaxBytes };
    writeFileSync(configFile, stringify(config));

    o.say(`chaos: ${o.counters} counters every ${o.periodMs} ms (${Math.round((o.counters * 1000) / o.periodMs)} changes/s), ≥ ${o.kills} kills, seed ${o.seed}, in ${dir}`);
    start();
    await waitUntil("the first connector subscribed", () => connector!.subscribedAt !== undefined, 90_000);
    await waitUntil("the first values at the cloud", () => cloudLow() >= 0, 60_000);

    // Every fault at least faultsEach times, kills as asked, in a seeded random order.
    const plan: Fault[] = [];
    for (let i = 0; i < o.kills; i++) plan.push("kill");
    for (const f of ["cut", "black-hole", "slow", "reset", "simulator", "clock"] as const) for (let i = 0; i < o.faultsEach; i++) plan.push(f);
    for (let i = plan.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [plan[i], plan[j]] = [plan[j]!, plan[i]!];
    }
    const fillAt = o.fillBuffer ? Math.floor(plan.length / 2) : -1;
    let shift = 0;

    for (const [i, fault] of plan.entries()) {
      if (i === fillAt) await fillBuffer();
      faults[fault] = (faults[fault] ?? 0) + 1;
      await sleep(between(...o.pauseMs));
      switch (fault) {
        case "kill": {
          const victim = connector!;
          const at = Date.now();
          const confirmed = await killAndConfirm(victim);
          if (!confirmed.ok) failures.push(`kill ${kills + 1}: ${confirmed.reason}`);
          else kills++;
          openBlind.push({ from: at, why: `kill ${kills}` });
          o.say(`chaos: kill ${kills} (pid ${victim.child.pid}${victim.subscribedAt ? ", running" : ", while starting"})`);
          await sleep(between(0, 1500));
          start();
          // Half the time the next kill may catch it starting; otherwise let it subscribe first.
          if (random() < 0.5) await waitUntil("the connector subscribed after a kill", () => connector!.subscribedAt !== undefined, 90_000);
          break;
        }
        case "cut":
        case "black-hole": {
          const from = Date.now();
          proxy.setMode(fault);
          await sleep(between(2000, 6000));
          proxy.setMode("forward");
          dropWindows.push({ from: from - 60_000, to: Date.now(), why: fault });
          o.say(`chaos: uplink ${fault} for ${Date.now() - from} ms`);
          break;
        }
        case "slow": {
          const from = Date.now();
          proxy.setRate(16 * 1024);
          await sleep(between(3000, 6000));
          proxy.setRate(0);
          dropWindows.push({ from: from - 60_000, to: Date.now(), why: "slow" });
          o.say(`chaos: uplink at 16 KiB/s for ${Date.now() - from} ms`);
          break;
        }
        case "reset":
          o.say(`chaos: uplink reset (${proxy.reset()} connections)`);
          break;
        case "simulator": {
          const from = Date.now();
          await sim.stop();
          const value = sim.loadValue!;
          openBlind.push({ from, why: "simulator restart" });
          simRestarts.push({ from, value });
          await sleep(between(200, 2000));
          sim = await startSimulator(simOptions(value, simPort));
          restartValues.add(value);
          o.say(`chaos: simulator restarted at value ${value} (down ${Date.now() - from} ms)`);
          break;
        }
        case "clock": {
          // A step forward (up to an hour) or a few seconds back, as an NTP step would make; a
          // step from a shifted clock goes back to the true time. Not further back: the
          // simulator's certificate, made when the run started, would not be valid yet on the
          // connector's clock (and is refused, rightly: OPCUA_UNTRUSTED_CERT "not valid now").
          shift = shift !== 0 ? 0 : random() < 0.7 ? Math.round(between(60_000, 3_600_000)) : -Math.round(between(5_000, 20_000));
          writeFileSync(clockFile, String(shift));
          o.say(`chaos: connector's wall clock now ${shift >= 0 ? "+" : ""}${Math.round(shift / 1000)} s`);
          break;
        }
      }
    }
    writeFileSync(clockFile, "0");

    // The end mark: every value up to the simulator's value now must be accounted for.
    if (!connector!.subscribedAt) await waitUntil("the last connector subscribed", () => connector!.subscribedAt !== undefined, 90_000);
    await sleep(1000);
    const endValue = sim.loadValue!;
    o.say(`chaos: end mark at value ${endValue}; waiting for the backlog`);
    await waitUntil(`every counter at the cloud up to ${endValue}`, () => cloudLow() >= endValue, 180_000);
    // Batches are retried apart from each other: an older one may still be in its backoff. Wait
    // (within reason) until the tally finds nothing missing; what is then left must be in the buffer.
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline && tally({ deliveries, endValue, blind, dropWindows, droppedByBuffer: Number.MAX_SAFE_INTEGER, restartValues, kills, slackMs: o.slackMs, tickTime, periodMs: o.periodMs }).lost > 0) {
      await sleep(1000);
    }
    const stop = await stopGracefully(connector!);
    if (stop.code !== 0 || stop.killed) failures.push(`the final stop was not clean: code ${stop.code}, signal ${stop.signal}, killed after 10 s: ${stop.killed}`);
    for (const w of openBlind) failures.push(`a blind window (${w.why}) never closed`);

    const buffer = DurableBuffer.open({ path: path.join(stateDir, "buffer.db"), maxBytes: 1024 ** 3, logger });
    const stats = buffer.stats();
    const buffered = new Deliveries(o.counters);
    for (const batch of buffer.next(Number.MAX_SAFE_INTEGER)) {
      for (const m of batch.messages) {
        if (m.kind === "status" && m.reason?.startsWith(FILLER)) filler.buffered++;
        if (m.kind !== "data" || m.machine !== DEMO_MACHINE) continue;
        for (const item of m.items) if (item.key.startsWith("load.") && !item.hb) buffered.add(Number(item.key.slice(5)), Number(item.v), Date.parse(item.t));
      }
    }
    buffer.close();
    for (const c of connectors) warnings.push(...c.errors.map((e) => `pid ${c.child.pid}: ${e}`));
    if (process.env.KERF_CHAOS_MESSAGES) for (const c of connectors) warnings.push(...c.messages.map((e) => `pid ${c.child.pid}: ${e}`));
    const input: TallyInput = { deliveries, buffered, endValue, blind, dropWindows, droppedByBuffer: stats.droppedItems - (filler.appended - filler.delivered - filler.buffered), restartValues, kills, slackMs: o.slackMs, tickTime, periodMs: o.periodMs };
    o.say(`chaos: the buffer counted ${stats.droppedItems} items dropped (${JSON.stringify(stats.dropped)}); filler appended ${filler.appended}, delivered ${filler.delivered}, still buffered ${filler.buffered}`);
    // The connector may read again after a simulator restart without a line that says so (node-opcua
    // repairs the channel and recreates the subscription): such a window ends, at the latest, when
    // the first value the restarted server published reached the cloud.
    for (const r of simRestarts) {
      const w = blind.find((b) => b.from === r.from && b.why === "simulator restart");
      let first = Number.POSITIVE_INFINITY;
      for (let c = 0; c < o.counters; c++) {
        for (let v = r.value + 1; v <= endValue; v++) {
          if (deliveries.has(c, v)) {
            first = Math.min(first, deliveries.time(c, v));
            break;
          }
        }
      }
      if (w && first < w.to) {
        o.say(`chaos: the blind window of the simulator restart at ${new Date(r.from).toISOString().slice(11, 23)} ends at its first value at the cloud, ${Math.round((w.to - first) / 1000)} s before the connector said it reads again`);
        w.to = first;
      }
    }
    const hms = (ms: number) => new Date(ms).toISOString().slice(11, 23);
    for (const w of blind) o.say(`chaos: blind ${hms(w.from)}..${hms(w.to)} ${w.why}`);
    for (const w of dropWindows) o.say(`chaos: drop window ${hms(w.from)}..${hms(w.to)} ${w.why}`);
    const blindMs = blind.reduce((n, w) => n + w.to - w.from, 0);
    o.say(`chaos: ${blind.length} blind windows (kill or simulator stop until reading again), ${Math.round(blindMs / 1000)} s in all, the longest ${Math.round(Math.max(0, ...blind.map((w) => w.to - w.from)) / 1000)} s`);
    if (kills < o.kills) failures.push(`only ${kills} of ${o.kills} kills happened`);
    return { ...tally(input), failures, faults, seconds: Math.round((Date.now() - started) / 1000), warnings, input };
  } finally {
    clearInterval(sampler);
    if (connector && connector.child.exitCode === null && connector.child.signalCode === null) {
      connector.child.kill("SIGKILL");
      await connector.exited;
    }
    await sim?.stop().catch(() => undefined);
    await proxy?.close();
    await devcloud?.stop().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }

  /**
   * The buffer at its cap, and dropOldest at work on real values. At 1 byte per compressed load
   * value a 1 MiB buffer would take minutes of cut uplink to fill, so the run tops it up: the
   * uplink is cut, the connector buffers load values for a few seconds, is killed (a kill like
   * the others), and while it is dead the run appends filler (status messages with random
   * reasons, which do not compress) to the cap. The next connector, still cut off, must evict:
   * first the oldest batches, the load values buffered before the kill, then filler. Filler is
   * told apart from load values in the tally: what the cloud or the buffer still has of it was
   * not dropped, the rest of it was.
   */
  async function fillBuffer(): Promise<void> {
    await waitUntil("the connector subscribed before the buffer fill", () => connector!.subscribedAt !== undefined, 90_000);
    // Values flowing right now (the backlog drained, and a second of fresh ones at the cloud), so
    // that the connector buffers load values during the cut; after a clock step its OPC UA
    // channel may still be renewing.
    const mark = sim!.loadValue! + Math.ceil(1000 / o.periodMs);
    await waitUntil("fresh values at the cloud before the buffer fill", () => cloudLow() >= mark, 120_000);
    const from = Date.now();
    proxy!.setMode("cut");
    await sleep(3000);
    const at = Date.now();
    const confirmed = await killAndConfirm(connector!);
    if (!confirmed.ok) failures.push(`kill before the buffer fill: ${confirmed.reason}`);
    else kills++;
    openBlind.push({ from: at, why: `kill ${kills} (buffer fill)` });
    const buffer = DurableBuffer.open({ path: path.join(stateDir, "buffer.db"), maxBytes: bufferMaxBytes, logger });
    const dropsBefore = buffer.stats().droppedItems;
    try {
      // Up to about 2 KiB below the cap, in smaller steps near it: the filling itself must not evict.
      for (let room = bufferMaxBytes - buffer.stats().bytes; room > 2048; room = bufferMaxBytes - buffer.stats().bytes) {
        const n = room > 64 * 1024 ? 20 : 1;
        const t = new Date().toISOString();
        buffer.append(Array.from({ length: n }, () => ({ kind: "status" as const, machine: DEMO_MACHINE, state: "online" as const, reason: FILLER + randomBytes(512).toString("base64"), t })));
        filler.appended += n;
      }
      if (buffer.stats().droppedItems !== dropsBefore) failures.push("the buffer fill itself evicted");
    } finally {
      buffer.close();
    }
    const victim = start();
    await waitUntil("the buffer full (a buffer_full line)", () => victim.evictions.length > 0, 120_000);
    await sleep(3000);
    proxy!.setMode("forward");
    dropWindows.push({ from, to: Date.now(), why: "buffer fill" });
    faults.fill = 1;
    o.say(`chaos: buffer filled to its cap (${filler.appended} filler items): kill ${kills}, uplink cut for ${Math.round((Date.now() - from) / 1000)} s`);
  }
}
