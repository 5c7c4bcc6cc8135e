import { mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import type { Agent as UndiciAgent } from "undici";
import { DurableBuffer, type BufferStats } from "./buffer/buffer.ts";
import { BufferWriter } from "./buffer/writer.ts";
import { watchMapping } from "./mapping-reload.ts";
import { HEALTH_INTERVAL_MS, memorySnapshot, writeHealth } from "./health.ts";
import { ensureIdentity, type Enroller } from "./certs/identity.ts";
import { loadIdentityFiles } from "./certs/files.ts";
import type { LoadedConfig } from "./config/load.ts";
import type { Logger } from "./log.ts";
import { openClientPki } from "./opcua/pki.ts";
import { releaseAfterBurst } from "./memory.ts";
import { MachineSession } from "./opcua/session.ts";
import type { MappingGroup } from "./config/schema.ts";
import type { EndpointSpec, GroupSpec } from "./opcua/types.ts";
import type { MessageSink } from "./types.ts";
import { createUplinkAgent } from "./uplink/agent.ts";
import { Sender, type SenderStats } from "./uplink/sender.ts";

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
  #dispatcher: UndiciAgent | null = null;
  sender: Sender | null = null;
  sessions: MachineSession[] = [];
  #healthTimer: NodeJS.Timeout | null = null;
  readonly #memory: ReturnType<typeof releaseAfterBurst>;
  #mappingWatch: { close(): void; reload(): Promise<boolean> } | null = null;

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
    this.#dispatcher = createUplinkAgent({
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
      agent: this.#dispatcher,
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
    const sink: MessageSink = { write: (messages) => this.#writer.write(messages) };
    for (const spec of endpointSpecs(this.#o.loaded, secrets)) {
      const session = new MachineSession({ spec, pki, sink, logger: this.#log.child({ component: "opcua" }) });
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
    try {
      writeHealth(this.#o.stateDir, {
        at: new Date().toISOString(),
        pid: process.pid,
        sessions: h.sessions.map((s) => ({ machine: s.machine, state: s.state, lastError: s.lastError, lastDataAt: s.lastDataAt })),
        uplink: h.uplink && { lastAckAt: h.uplink.lastAckAt, consecutiveFailures: h.uplink.consecutiveFailures, lastError: h.uplink.lastError },
        buffer: { items: h.buffer.items, bytes: h.buffer.bytes, droppedItems: h.buffer.droppedItems },
        memory: memorySnapshot(),
        stages: { ...this.#writer.takeStages(), ...this.sender?.takeStages() },
      });
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, "cannot write the health report");
    }
  }

  /** Stops in reverse order and returns the final counters (the buffer is closed afterwards). */
  async stop(options: { drainMs?: number } = {}): Promise<{ buffer: BufferStats; uplink: SenderStats | null }> {
    if (this.#healthTimer) clearInterval(this.#healthTimer);
    this.#memory.cancel();
    this.#mappingWatch?.close();
    await Promise.all(this.sessions.map((s) => s.stop()));
    this.#writer.commit();
    this.#writer.close();
    if (this.sender) {
      if (options.drainMs) await this.sender.drain(options.drainMs);
      await this.sender.stop();
    }
    await this.#dispatcher?.close();
    const final = { buffer: this.buffer.stats(), uplink: this.sender?.stats() ?? null };
    this.buffer.close();
    return final;
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
