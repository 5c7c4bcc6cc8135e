import path from "node:path";
import type { LoadedConfig } from "../config/load.ts";
import { watchMapping } from "../config/mapping-reload.ts";
import type { Logger } from "../log.ts";
import type { Item, MessageSink } from "../message.ts";
import { expiryNotice, type AppCertificateStatus } from "../opcua/trust/app-cert.ts";
import { openClientPki, type ConnectorPki } from "../opcua/trust/pki.ts";
import { MachineSession, type SessionHealth } from "../opcua/session/session.ts";
import type { GroupSpec } from "../opcua/types.ts";
import { releaseAfterBurst } from "./memory.ts";
import { STOP_GRACE_MS, within, type Part, type PartHealth, type Problem, type StopBudget } from "./part.ts";
import { endpointSpecs, groupSpecs } from "./specs.ts";

export interface MachineHealth extends SessionHealth {
  machine: string;
  /** When each group with a watchdog last had data (ms since the epoch; the start of watching until then). */
  groupDataAt: Record<string, number>;
}

export interface MachinesPartOptions {
  loaded: LoadedConfig;
  stateDir: string;
  logger: Logger;
  /** The buffer's sink; commit() makes what was written durable now. */
  sink: MessageSink & { commit(): void };
  /** What was delivered per key before this process started (the buffer keeps it across restarts). */
  lastDelivered: (machine: string, keys: Set<string>) => Map<string, Item>;
}

export interface MachinesPartHealth extends PartHealth {
  sessions: MachineHealth[];
  /** The connector's OPC UA application certificate: expiry, and a staged renewal. */
  opcuaCertificate: AppCertificateStatus | null;
}

/** How often the expiry of the OPC UA application certificate is logged (besides at start). */
const EXPIRY_CHECK_MS = 24 * 3600_000;

/** States in which a session's loop is connected or retrying on purpose (with its backoff). */
const PROGRESSING: ReadonlySet<SessionHealth["state"]> = new Set(["connected", "connecting", "reconnecting"]);

/**
 * One OPC UA session per machine, writing into the buffer's sink, and the mapping file watch
 * that applies a changed mapping to them.
 */
export class MachinesPart implements Part<MachinesPartHealth> {
  readonly name = "machines";
  readonly #o: MachinesPartOptions;
  readonly #log: Logger;
  readonly #memory: ReturnType<typeof releaseAfterBurst>;
  readonly #sessions: MachineSession[] = [];
  readonly #watched = new Map<string, GroupWatch>();
  #mappingWatch: { close(): void; reload(): Promise<boolean> } | null = null;
  #pki: ConnectorPki | null = null;
  #expiryTimer: NodeJS.Timeout | null = null;
  #stopping = false;

  constructor(options: MachinesPartOptions) {
    this.#o = options;
    this.#log = options.logger;
    this.#memory = releaseAfterBurst(this.#log.child({ component: "memory" }));
  }

  get sessions(): readonly MachineSession[] {
    return this.#sessions;
  }

  async start(): Promise<void> {
    const { loaded, stateDir } = this.#o;
    const pki = await openClientPki({ dir: path.join(stateDir, "pki"), instance: loaded.config.instance, logger: this.#log.child({ component: "pki" }) });
    this.#pki = pki;
    this.#checkExpiry();
    this.#expiryTimer = setInterval(() => this.#checkExpiry(), EXPIRY_CHECK_MS);
    this.#expiryTimer.unref();
    for (const spec of endpointSpecs(loaded, loaded.secrets)) {
      const keys = new Set(spec.groups.flatMap((g) => g.nodes.map((n) => n.key)));
      const watch = new GroupWatch(spec.groups);
      this.#watched.set(spec.machine, watch);
      const session = new MachineSession({ spec, pki, sink: this.#o.sink, lastDelivered: this.#o.lastDelivered(spec.machine, keys), logger: this.#log.child({ component: "opcua" }) });
      // The session's own watchdog starts over with each connection; this one spans reconnects.
      session.on("groupData", (group: string) => watch.saw(group));
      // Subscribing a large mapping allocates far more than it keeps.
      session.on("subscribed", () => this.#memory.schedule(`${session.machine} subscribed`));
      this.#sessions.push(session);
      session.start();
    }
    this.#mappingWatch = watchMapping({
      loaded,
      logger: this.#log.child({ component: "mapping" }),
      apply: async (next) => {
        for (const session of this.#sessions) {
          const groups = groupSpecs(next.mapping.machines[session.machine]?.groups ?? []);
          this.#watched.get(session.machine)?.reset(groups);
          const result = await session.applyMapping(groups);
          if (result) this.#log.info({ machine: session.machine, added: result.added.length, removed: result.removed.length, changed: result.changed.length }, "mapping applied as a diff");
        }
        this.#memory.schedule("mapping reloaded");
      },
    });
  }

  /** Re-reads the mapping now (the file watcher does this on its own); false when it was refused. */
  reloadMapping(): Promise<boolean> {
    return this.#mappingWatch?.reload() ?? Promise.resolve(false);
  }

  async stop(budget: StopBudget): Promise<void> {
    this.#stopping = true;
    if (this.#expiryTimer) clearInterval(this.#expiryTimer);
    this.#memory.cancel();
    this.#mappingWatch?.close();
    // Their last values and "offline" statuses still go into the buffer.
    if (!(await within(Promise.all(this.#sessions.map((s) => s.stop())), budget.left(3 * STOP_GRACE_MS)))) {
      this.#log.warn({ machines: this.#sessions.filter((s) => s.state !== "stopped").map((s) => s.machine) }, "OPC UA sessions did not close in time; leaving them");
    }
    // What the sessions wrote last is committed before anything else stops.
    this.#o.sink.commit();
  }

  health(now: number): MachinesPartHealth {
    const problems: Problem[] = [];
    const sessions = this.#sessions.map((s): MachineHealth => {
      const h = s.health();
      const watch = this.#watched.get(s.machine);
      const part = `machine ${s.machine}`;
      const code = h.lastErrorCode;
      const problem = (reason: string) => problems.push({ part, reason: h.lastError ? `${reason}; last error: ${h.lastError}` : reason, ...(code ? { code } : {}) });
      if (!this.#stopping && !PROGRESSING.has(h.state)) problem(`neither connected nor retrying: ${h.state} since ${new Date(h.since).toISOString()}`);
      for (const late of watch?.late(now) ?? []) problem(`group '${late.group}' has had no data for ${Math.round(late.silentMs / 1000)} s (its watchdog: ${late.watchdogSeconds} s)`);
      return { machine: s.machine, ...h, groupDataAt: watch?.dataAt() ?? {} };
    });
    // Near expiry it still works: a warning. Expired, the machines refuse it: a problem.
    const warnings: Problem[] = [];
    const certificate = this.#pki?.own.status(now) ?? null;
    const notice = certificate && expiryNotice(certificate, this.#o.stateDir);
    if (notice) (notice.level === "error" ? problems : warnings).push({ part: "opcua certificate", reason: notice.message, ...(notice.level === "error" ? { code: "OPCUA_OWN_CERT_EXPIRED" } : {}) });
    return { problems, warnings, sessions, opcuaCertificate: certificate };
  }

  /** At start and daily: a WARN from 30 days before the application certificate expires, an ERROR once it has. */
  #checkExpiry(): void {
    const own = this.#pki?.own;
    if (!own) return;
    const status = own.status();
    const notice = expiryNotice(status, this.#o.stateDir);
    if (!notice) return;
    const fields = { thumbprint: status.thumbprint, notAfter: status.notAfter, daysLeft: status.daysLeft, ...(status.staged ? { staged: status.staged.thumbprint } : {}) };
    if (notice.level === "error") this.#log.error(fields, notice.message);
    else this.#log.warn(fields, notice.message);
  }
}

/** When each group with a watchdog last had data, across the session's reconnects. */
class GroupWatch {
  #watchdogs = new Map<string, number>();
  #dataAt = new Map<string, number>();

  constructor(groups: readonly GroupSpec[]) {
    this.reset(groups);
  }

  reset(groups: readonly GroupSpec[]): void {
    const now = Date.now();
    this.#watchdogs.clear();
    for (const g of groups) {
      if (!g.watchdogSeconds) continue;
      this.#watchdogs.set(g.name, g.watchdogSeconds);
      if (!this.#dataAt.has(g.name)) this.#dataAt.set(g.name, now);
    }
  }

  saw(group: string): void {
    if (this.#watchdogs.has(group)) this.#dataAt.set(group, Date.now());
  }

  late(now: number): { group: string; silentMs: number; watchdogSeconds: number }[] {
    const late: { group: string; silentMs: number; watchdogSeconds: number }[] = [];
    for (const [group, watchdogSeconds] of this.#watchdogs) {
      const silentMs = now - (this.#dataAt.get(group) ?? now);
      if (silentMs > watchdogSeconds * 1000) late.push({ group, silentMs, watchdogSeconds });
    }
    return late;
  }

  dataAt(): Record<string, number> {
    return Object.fromEntries([...this.#dataAt].filter(([g]) => this.#watchdogs.has(g)));
  }
}
