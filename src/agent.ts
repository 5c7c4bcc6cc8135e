import { mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { DurableBuffer, type BufferStats } from "./buffer/buffer.ts";
import { BufferWriter } from "./buffer/writer.ts";
import { watchMapping } from "./mapping-reload.ts";
import { HEALTH_INTERVAL_MS, memorySnapshot, processIdentity, writeHealth, type AgentState, type ProcessIdentity } from "./health.ts";
import { ensureIdentity, type Enroller } from "./certs/identity.ts";
import { loadIdentityFiles } from "./certs/files.ts";
import type { LoadedConfig } from "./config/load.ts";
import type { Logger } from "./log.ts";
import { openClientPki } from "./opcua/trust/pki.ts";
import { releaseAfterBurst } from "./memory.ts";
import { processGuardStats } from "./process-guard.ts";
import { MachineSession } from "./opcua/session/session.ts";
import type { MappingGroup } from "./config/schema.ts";
import type { EndpointSpec, GroupSpec } from "./opcua/types.ts";
import { itemCount, type MessageSink } from "./message.ts";
import { Transport } from "./uplink/transport.ts";
import { Sender, type SenderStats } from "./uplink/sender.ts";

/**
 * A stop ends within this, whatever hangs (a server or cloud that accepts and never answers, a
 * subscribe of 100,000 items): a container runtime sends SIGKILL 10 s after SIGTERM.
 */
export const STOP_DEADLINE_MS = 8_000;
/** Requests in flight at a stop get this long to be answered before they are aborted (they stay buffered). */
const STOP_GRACE_MS = 1_000;

export interface AgentOptions {
  loaded: LoadedConfig;
  stateDir: string;
  logger: Logger;
  /** Issues the instance certificate when there is none yet (the enrolment seam). */
  enroller?: Enroller;
}

/**
 * The composition root: starts buffer, uplink and one session per machine, in that
 * order, so that nothing the machines send has nowhere to go; stops them in reverse.
 */
export class Agent {
  readonly buffer: DurableBuffer;
  readonly #writer: BufferWriter;
  #o: AgentOptions;
  #log: Logger;
  #transport: Transport | null = null;
  sender: Sender | null = null;
  sessions: MachineSession[] = [];
  #healthTimer: NodeJS.Timeout | null = null;
  readonly #memory: ReturnType<typeof releaseAfterBurst>;
  #mappingWatch: { close(): void; reload(): Promise<boolean> } | null = null;
  #state: AgentState = "running";
  #stopped: Promise<{ buffer: BufferStats; uplink: SenderStats | null }> | null = null;
  readonly #process: ProcessIdentity = processIdentity();
  /** Values that arrived after the buffer was closed (a session that did not stop in time). */
  #late = 0;

  constructor(options: AgentOptions) {
    this.#o = options;
    this.#log = options.logger;
    this.#memory = releaseAfterBurst(this.#log.child({ component: "memory" }));
    const { config } = options.loaded;
    mkdirSync(options.stateDir, { recursive: true, mode: 0o700 });
    this.buffer = DurableBuffer.open({
      path: path.join(options.stateDir, "buffer.db"),
      maxBytes: config.buffer.maxBytes,
      logger: options.logger.child({ component: "buffer" }),
    });
    this.#writer = new BufferWriter({
      buffer: this.buffer,
      maxItems: config.cloud.batch.maxItems,
      logger: options.logger.child({ component: "buffer" }),
      onCommit: () => this.sender?.wake(),
    });
  }

  async start(): Promise<void> {
    const { config, secrets } = this.#o.loaded;
    const identity = config.cloud.identity
      ? await loadIdentityFiles(config.cloud.identity.certificateFile, config.cloud.identity.privateKeyFile)
      : await ensureIdentity({
          dir: path.join(this.#o.stateDir, "identity"),
          instance: config.instance,
          enroller: this.#o.enroller,
          logger: this.#log.child({ component: "identity" }),
        });
    this.#transport = new Transport({
      certPem: identity.certPem,
      keyPem: identity.keyPem,
      caPem: config.cloud.caFile ? readFileSync(config.cloud.caFile, "utf8") : undefined,
      pins: config.cloud.pins,
      logger: this.#log.child({ component: "uplink" }),
      // live requests, and as many stuck ones waiting out their deadlines beside them (pacer.ts)
      connections: 2 * config.cloud.concurrency,
    });
    this.sender = new Sender({
      store: this.buffer,
      transport: this.#transport,
      url: config.cloud.url,
      instance: config.instance,
      concurrency: config.cloud.concurrency,
      requestTimeoutMs: config.cloud.requestTimeoutMs,
      retry: config.cloud.retry,
      maxItemsPerRequest: config.cloud.batch.maxItems,
      maxBytesPerRequest: config.cloud.batch.maxBytes,
      logger: this.#log.child({ component: "uplink" }),
    });
    this.sender.start();

    const pki = await openClientPki({ dir: path.join(this.#o.stateDir, "pki"), instance: config.instance, logger: this.#log.child({ component: "pki" }) });
    const sink: MessageSink = {
      write: (messages) => {
        if (this.#state === "stopped") {
          // only a session that outlived the stop deadline gets here
          if (this.#late === 0) this.#log.warn("values arrived after the buffer was closed; they are not stored");
          this.#late += itemCount(messages);
          return;
        }
        this.#writer.write(messages);
      },
    };
    for (const spec of endpointSpecs(this.#o.loaded, secrets)) {
      const keys = new Set(spec.groups.flatMap((g) => g.nodes.map((n) => n.key)));
      const lastDelivered = this.buffer.lastDelivered(spec.machine, keys);
      const session = new MachineSession({ spec, pki, sink, lastDelivered, logger: this.#log.child({ component: "opcua" }) });
      // Subscribing a large mapping allocates far more than it keeps.
      session.on("subscribed", () => this.#memory.schedule(`${session.machine} subscribed`));
      this.sessions.push(session);
      session.start();
    }
    this.#mappingWatch = watchMapping({
      loaded: this.#o.loaded,
      logger: this.#log.child({ component: "mapping" }),
      apply: async (next) => {
        for (const session of this.sessions) {
          const result = await session.applyMapping(groupSpecs(next.mapping.machines[session.machine]?.groups ?? []));
          if (result) this.#log.info({ machine: session.machine, added: result.added.length, removed: result.removed.length, changed: result.changed.length }, "mapping applied as a diff");
        }
        this.#memory.schedule("mapping reloaded");
      },
    });
    this.#writeHealth();
    this.#healthTimer = setInterval(() => this.#writeHealth(), HEALTH_INTERVAL_MS);
    this.#healthTimer.unref();
  }

  #writeHealth(): void {
    const h = this.health();
    const at = new Date().toISOString();
    try {
      writeHealth(this.#o.stateDir, {
        at,
        pid: process.pid,
        process: this.#process,
        state: this.#state,
        ...(this.#state === "stopped" ? { stopped: true, stoppedAt: at } : {}),
        sessions: h.sessions.map((s) => ({
          machine: s.machine,
          state: s.state,
          lastError: s.lastError,
          lastDataAt: s.lastDataAt,
          ...(s.credentialsRejected ? { credentialsRejected: true } : {}),
          ...(Object.keys(s.undecodable).length > 0 ? { undecodable: s.undecodable } : {}),
        })),
        uplink: h.uplink && { lastAckAt: h.uplink.lastAckAt, consecutiveFailures: h.uplink.consecutiveFailures, lastError: h.uplink.lastError },
        buffer: { items: h.buffer.items, bytes: h.buffer.bytes, droppedItems: h.buffer.droppedItems },
        writer: { pendingItems: h.writer.pendingItems, failures: h.writer.failures, lastError: h.writer.lastError },
        unhandledRejections: processGuardStats().unhandledRejections,
        memory: memorySnapshot(),
        stages: { ...this.#writer.takeStages(), ...this.sender?.takeStages() },
      });
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, "cannot write the health report");
    }
  }

  /**
   * Stops in reverse order and returns the final counters (the buffer is closed afterwards).
   * Whatever hangs, it returns within `deadlineMs` (STOP_DEADLINE_MS): every step gets what is
   * left of it, requests in flight are aborted after a short grace and stay buffered, and the last
   * health report says "stopped". `drainMs` waits for the backlog to go out, within the deadline
   * and only while the cloud answers. Calling it again returns the same stop.
   */
  stop(options: { drainMs?: number; deadlineMs?: number } = {}): Promise<{ buffer: BufferStats; uplink: SenderStats | null }> {
    this.#stopped ??= this.#stop(options);
    return this.#stopped;
  }

  async #stop(options: { drainMs?: number; deadlineMs?: number }): Promise<{ buffer: BufferStats; uplink: SenderStats | null }> {
    const deadline = Date.now() + (options.deadlineMs ?? STOP_DEADLINE_MS);
    const left = (reserveMs = 0) => Math.max(0, deadline - reserveMs - Date.now());
    if (this.#healthTimer) clearInterval(this.#healthTimer);
    this.#state = "stopping";
    this.#writeHealth();
    this.#memory.cancel();
    this.#mappingWatch?.close();
    // Sessions first: their last values and "offline" statuses still go into the buffer.
    if (!(await within(Promise.all(this.sessions.map((s) => s.stop())), left(3 * STOP_GRACE_MS)))) {
      this.#log.warn({ machines: this.sessions.filter((s) => s.state !== "stopped").map((s) => s.machine) }, "OPC UA sessions did not close in time; leaving them");
    }
    // What the sessions wrote last is committed before anything else stops.
    this.#writer.commit();
    if (this.sender) {
      // Waiting for the backlog only helps while the cloud answers.
      await this.#drain(this.sender, Math.min(options.drainMs ?? 0, left(2 * STOP_GRACE_MS)));
      await within(this.sender.stop(Math.min(STOP_GRACE_MS, left(STOP_GRACE_MS))), left(STOP_GRACE_MS / 2));
    }
    if (this.#transport && !(await within(this.#transport.close(), Math.min(STOP_GRACE_MS / 2, left())))) {
      void this.#transport.destroy().catch(() => undefined);
    }
    // a session left behind may have written since
    this.#writer.commit();
    this.#writer.close();
    const final = { buffer: this.buffer.stats(), uplink: this.sender?.stats() ?? null };
    this.#state = "stopped";
    this.#writeHealth();
    // A full compaction can take a while on a large file; with little time left it waits for the next start.
    this.buffer.close({ compact: left() > STOP_GRACE_MS });
    return final;
  }

  /** Waits for the backlog to go out, at most `ms`, and no longer once the cloud stops acknowledging. */
  async #drain(sender: Sender, ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    let lastAck = sender.health().lastAckAt;
    while (sender.health().consecutiveFailures === 0) {
      const slice = Math.min(500, deadline - Date.now());
      if (slice <= 0 || (await sender.drain(slice))) return;
      const ack = sender.health().lastAckAt;
      if (ack === lastAck) return;
      lastAck = ack;
    }
  }

  /** Re-reads the mapping now (the file watcher does this on its own); false when it was refused. */
  reloadMapping(): Promise<boolean> {
    return this.#mappingWatch?.reload() ?? Promise.resolve(false);
  }

  health() {
    return {
      sessions: this.sessions.map((s) => ({ machine: s.machine, ...s.health() })),
      uplink: this.sender?.health() ?? null,
      buffer: this.buffer.stats(),
      writer: this.#writer.health(),
    };
  }
}

export function endpointSpecs(loaded: LoadedConfig, secrets: LoadedConfig["secrets"]): EndpointSpec[] {
  const { config, mapping } = loaded;
  return config.machines.map((m) => {
    const groups = mapping.machines[m.id]?.groups ?? [];
    const user = m.user;
    return {
      machine: m.id,
      endpointUrl: m.endpoint,
      securityMode: m.security.mode,
      securityPolicy: m.security.policy,
      allowDeprecated: m.security.allowDeprecated,
      trustOnFirstUse: m.trustOnFirstUse,
      allowHostnameMismatch: m.allowHostnameMismatch,
      user:
        user.type === "username"
          ? { type: "username", username: user.username, password: secrets.machines[m.id]?.password?.reveal() ?? "", ...(user.passwordFile ? { passwordFile: user.passwordFile } : {}) }
          : user.type === "certificate"
            ? { type: "certificate", certificatePem: secrets.machines[m.id]?.userCertificatePem ?? "", privateKeyPem: secrets.machines[m.id]?.userPrivateKey?.reveal() ?? "" }
            : { type: "anonymous" },
      connectTimeoutMs: m.connectTimeoutMs,
      sessionTimeoutMs: m.sessionTimeoutMs,
      groups: groupSpecs(groups),
    };
  });
}

/** The mapping's groups as the OPC UA layer takes them (also for a reloaded mapping: `applyMapping`). */
export function groupSpecs(groups: readonly MappingGroup[]): GroupSpec[] {
  // The schema has already resolved every per-node setting against its group.
  return groups.map((g) => ({
    name: g.name,
    publishingInterval: g.publishingInterval,
    ...(g.priority !== undefined ? { priority: g.priority } : {}),
    ...(g.watchdogSeconds ? { watchdogSeconds: g.watchdogSeconds } : {}),
    // The schema's node objects are NodeSpecs already (resolved, without undefined fields);
    // 100,000 copies of them would cost ~6 MB for nothing.
    nodes: g.nodes,
    events: (g.events ?? []).map((e) => ({ key: e.key, notifier: e.notifier, eventType: e.eventType, select: e.select, queueSize: e.queueSize })),
  }));
}

/** Waits for `promise` at most `ms`; true when it settled in time (a rejection counts as settled). */
async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const settled = promise.then(
    () => true,
    () => true,
  );
  const done = await Promise.race([settled, new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)))]);
  clearTimeout(timer);
  return done;
}
