import { renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseListen } from "../config/listen.ts";
import type { StatusConfig } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import { listenEndpoint } from "../metrics/endpoint.ts";
import { Metrics, type MetricsSnapshot } from "../metrics/metrics.ts";
import type { Sender } from "../uplink/sender.ts";
import { within, type Part, type PartHealth, type Problem, type StopBudget } from "./part.ts";

export const METRICS_FILE = "metrics.prom";

export interface MetricsPartOptions {
  stateDir: string;
  status: StatusConfig;
  logger: Logger;
  /** This connector's id (config `instance`): a label on every series, so that several connectors' files can share a collector directory. */
  instance: string;
  /** The parts' counters, read from the same sources as the health report. */
  snapshot: () => MetricsSnapshot;
  /** The summary `kerf status --json` prints, for GET /status. */
  summary: () => unknown;
  /** The uplink's sender once it started: its answers feed the latency histogram. */
  sender: () => Sender | null;
}

export interface MetricsPartHealth extends PartHealth {
  /** Where the endpoint listens (status.listen), with the port it got. */
  endpoint: string | null;
  file: string;
}

/**
 * The Prometheus metrics: rewritten into <state>/metrics.prom every few seconds (a node
 * exporter's textfile collector reads it; nothing listens), and served on status.listen when set.
 * It started last, so the sender it listens to exists; a file it cannot write is a warning.
 */
export class MetricsPart implements Part<MetricsPartHealth> {
  readonly name = "metrics";
  readonly #o: MetricsPartOptions;
  readonly #metrics: Metrics;
  readonly #file: string;
  #timer: NodeJS.Timeout | null = null;
  #endpoint: { url: string; close(): Promise<void> } | null = null;
  #lastError: string | null = null;
  #unlisten: (() => void) | null = null;

  constructor(options: MetricsPartOptions) {
    this.#o = options;
    this.#metrics = new Metrics(options.instance);
    this.#file = options.status.metricsFile ?? path.join(options.stateDir, METRICS_FILE);
  }

  async start(): Promise<void> {
    const sender = this.#o.sender();
    if (sender) {
      const observe = (ms: number, outcome: string) => this.#metrics.observeUplinkRequest(ms, outcome);
      sender.on("answered", observe);
      this.#unlisten = () => sender.off("answered", observe);
    }
    const listen = this.#o.status.listen;
    if (listen !== undefined) {
      const address = parseListen(listen);
      // the config loader refused anything else
      if (typeof address === "string") throw new Error(`status.listen: ${address}`);
      this.#endpoint = await listenEndpoint(address, {
        metrics: async () => ({ contentType: this.#metrics.registry.contentType, body: await this.text() }),
        status: () => this.#o.summary(),
      });
      this.#o.logger.info({ event: "status_endpoint", url: this.#endpoint.url }, `status and metrics served at ${this.#endpoint.url} (/metrics, /status)`);
    }
    await this.#write();
    this.#timer = setInterval(() => void this.#write(), this.#o.status.metricsIntervalSeconds * 1000);
    this.#timer.unref();
  }

  /** The Prometheus text now. */
  text(): Promise<string> {
    return this.#metrics.text(this.#o.snapshot());
  }

  async stop(budget: StopBudget): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#unlisten?.();
    if (this.#endpoint) await within(this.#endpoint.close(), Math.min(500, budget.left()));
  }

  health(): MetricsPartHealth {
    const warnings: Problem[] = this.#lastError ? [{ part: this.name, reason: `cannot write ${this.#file}: ${this.#lastError}`, code: "METRICS" }] : [];
    return { problems: [], warnings, endpoint: this.#endpoint?.url ?? null, file: this.#file };
  }

  /** Atomic: a collector never reads half a file. */
  async #write(): Promise<void> {
    try {
      const text = await this.text();
      writeFileSync(`${this.#file}.tmp`, text, { mode: 0o644 });
      renameSync(`${this.#file}.tmp`, this.#file);
      this.#lastError = null;
    } catch (err) {
      if (this.#lastError === null) this.#o.logger.warn({ event: "metrics_write_failed", err: (err as Error).message, file: this.#file }, "cannot write the metrics file");
      this.#lastError = (err as Error).message;
    }
  }
}
