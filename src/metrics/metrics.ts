import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { DropReason } from "../message.ts";

/**
 * What the agent's parts report, read once per refresh from the same sources as health.json
 * (src/agent/agent.ts builds it); the metrics own no counter of their own but the latency histogram.
 */
export interface MetricsSnapshot {
  version: string;
  /** Values the machines handed to the buffer since this process started. */
  received: number;
  /** The buffer's lifetime counters (persisted across restarts) and what it holds now. */
  buffer: { appendedItems: number; ackedItems: number; dropped: Record<DropReason, number>; items: number; bytes: number; oldestCreatedAt: number | null };
  /** Items put into requests since start (a retried item counts each time), null before the uplink started. */
  uplink: { sentItems: number; consecutiveFailures: number; lastAckAt: number | null } | null;
  machines: { machine: string; state: string; connects: number }[];
  /** The instance certificate in service, ms since the epoch. */
  certificateNotAfter: number | null;
  /** Access tokens fetched since start (with cloud.auth). */
  tokenRenewals: number | null;
  update: { state: string; consecutiveFailures: number } | null;
  /** The command channel (with a commands section): commands taken and refused since start, polls failed in a row. */
  commands: { accepted: number; refused: number; consecutiveFailures: number } | null;
  /** Problems health reports now (0: healthy). */
  problems: number;
}

export const UPDATE_STATES = ["idle", "checking", "downloaded", "held", "requested"] as const;
const DAY_S = 86_400;

/**
 * The Prometheus view of a snapshot, on a registry of its own (not prom-client's global one,
 * which a library in the same process could fill). Counters mirror counters kept elsewhere:
 * each refresh sets them to the source's value.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly #m;

  /**
   * `instance` (config `instance`) becomes the label `kerf_instance` on every series: connectors
   * that share a host and a textfile directory stay apart (not `instance`, which Prometheus sets
   * itself when it scrapes).
   */
  constructor(instance?: string) {
    if (instance !== undefined) this.registry.setDefaultLabels({ kerf_instance: instance });
    const registers = [this.registry];
    const counter = <L extends string>(name: string, help: string, labelNames: readonly L[] = []) => new Counter<L>({ name, help, labelNames, registers });
    const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[] = []) => new Gauge<L>({ name, help, labelNames, registers });
    this.#m = {
      info: gauge("kerf_info", "Always 1; the label names the running version.", ["version"]),
      received: counter("kerf_values_received_total", "Values the machines handed to the buffer since the process started."),
      buffered: counter("kerf_values_buffered_total", "Values committed to the durable buffer (lifetime, kept across restarts)."),
      sent: counter("kerf_values_sent_total", "Values put into requests to the cloud since start; a retried value counts each time."),
      acked: counter("kerf_values_acknowledged_total", "Values the cloud acknowledged (lifetime, kept across restarts)."),
      dropped: counter("kerf_values_dropped_total", "Values dropped, by reason (lifetime, kept across restarts).", ["reason"]),
      bufferItems: gauge("kerf_buffer_items", "Values waiting in the durable buffer."),
      bufferBytes: gauge("kerf_buffer_bytes", "Payload bytes in the durable buffer."),
      bufferOldest: gauge("kerf_buffer_oldest_age_seconds", "Age of the oldest batch in the buffer; 0 when it is empty."),
      latency: new Histogram<"outcome">({
        name: "kerf_uplink_request_duration_seconds",
        help: "Uplink requests from send to answer (without compression), by what the retry policy made of the answer.",
        labelNames: ["outcome"],
        buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
        registers,
      }),
      uplinkFailures: gauge("kerf_uplink_consecutive_failures", "Uplink requests failed in a row."),
      lastAck: gauge("kerf_uplink_last_ack_timestamp_seconds", "When the cloud last acknowledged a batch; 0 before the first."),
      connected: gauge("kerf_machine_connected", "1 while the machine's OPC UA session is connected.", ["machine"]),
      reconnects: counter("kerf_machine_reconnects_total", "Connections after the first, per machine, since start.", ["machine"]),
      certDays: gauge("kerf_certificate_expiry_days", "Days until the instance certificate expires (negative once expired)."),
      tokens: counter("kerf_token_renewals_total", "Access tokens fetched since start."),
      update: gauge("kerf_update_state", "1 for the update loop's current state.", ["state"]),
      updateFailures: gauge("kerf_update_check_failures", "Update checks failed in a row."),
      commands: counter("kerf_commands_total", "Remote commands since start, by outcome: accepted (ran through the gate) or refused.", ["outcome"]),
      commandPollFailures: gauge("kerf_command_poll_failures", "Command polls failed in a row."),
      problems: gauge("kerf_health_problems", "Problems the health verdict reports; 0 while healthy."),
    };
  }

  observeUplinkRequest(ms: number, outcome: string): void {
    this.#m.latency.observe({ outcome }, ms / 1000);
  }

  /** The Prometheus text of `snapshot` (taken at `now`). */
  async text(snapshot: MetricsSnapshot, now = Date.now()): Promise<string> {
    this.#set(snapshot, now);
    return this.registry.metrics();
  }

  #set(s: MetricsSnapshot, now: number): void {
    const m = this.#m;
    m.info.reset();
    m.info.set({ version: s.version }, 1);
    mirror(m.received, s.received);
    mirror(m.buffered, s.buffer.appendedItems);
    mirror(m.acked, s.buffer.ackedItems);
    m.dropped.reset();
    for (const [reason, n] of Object.entries(s.buffer.dropped)) m.dropped.inc({ reason }, n);
    m.bufferItems.set(s.buffer.items);
    m.bufferBytes.set(s.buffer.bytes);
    m.bufferOldest.set(s.buffer.oldestCreatedAt === null ? 0 : Math.max(0, (now - s.buffer.oldestCreatedAt) / 1000));
    mirror(m.sent, s.uplink?.sentItems ?? 0);
    m.uplinkFailures.set(s.uplink?.consecutiveFailures ?? 0);
    m.lastAck.set((s.uplink?.lastAckAt ?? 0) / 1000);
    m.connected.reset();
    m.reconnects.reset();
    for (const x of s.machines) {
      m.connected.set({ machine: x.machine }, x.state === "connected" ? 1 : 0);
      m.reconnects.inc({ machine: x.machine }, Math.max(0, x.connects - 1));
    }
    // Without a label a metric always shows a value: one that has no source (no certificate yet,
    // no cloud.auth) leaves the registry rather than show 0 days or 0 renewals.
    if (this.#present(m.certDays, s.certificateNotAfter !== null)) m.certDays.set(Math.round(((s.certificateNotAfter! - now) / 1000 / DAY_S) * 100) / 100);
    if (this.#present(m.tokens, s.tokenRenewals !== null)) mirror(m.tokens, s.tokenRenewals!);
    m.update.reset();
    m.updateFailures.reset();
    if (s.update) {
      for (const state of UPDATE_STATES) m.update.set({ state }, s.update.state === state ? 1 : 0);
      m.updateFailures.set(s.update.consecutiveFailures);
    }
    m.commands.reset();
    if (this.#present(m.commandPollFailures, s.commands !== null)) {
      m.commands.inc({ outcome: "accepted" }, s.commands!.accepted);
      m.commands.inc({ outcome: "refused" }, s.commands!.refused);
      m.commandPollFailures.set(s.commands!.consecutiveFailures);
    }
    m.problems.set(s.problems);
  }

  #present(metric: Gauge | Counter, present: boolean): boolean {
    const name = (metric as unknown as { name: string }).name;
    const registered = this.registry.getSingleMetric(name) !== undefined;
    if (present && !registered) this.registry.registerMetric(metric);
    else if (!present && registered) this.registry.removeSingleMetric(name);
    return present;
  }
}

/** A counter kept elsewhere: prom-client counters only go up, so it starts over at the source's value. */
function mirror(counter: Counter, value: number): void {
  counter.reset();
  counter.inc(value);
}
