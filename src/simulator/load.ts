import type { AddressSpace, Namespace, UAVariable } from "node-opcua-address-space";
import { StatusCodes } from "node-opcua-status-code";
import { DataType, Variant } from "node-opcua-variant";
import type { Logger } from "../log.ts";
import { validateLoad, type LoadOptions } from "./load-options.ts";
import { loadCounterId } from "./nodes.ts";

export type { LoadOptions };

export interface RunningLoad {
  /** How many periods have passed: the value every counter holds now. */
  readonly value: number;
  stop(): void;
}

/**
 * N UInt32 counters under Objects/Load that all count up by one every period, from 0, in
 * lockstep. A receiver knows the exact sequence each counter must show, so it can count every
 * gap and duplicate.
 *
 * The counters have MinimumSamplingInterval 0: a client that asks for sampling interval 0 gets
 * every change pushed (exception-based). A client that samples at the period instead can see
 * two changes fall into one sample when the timers drift; sample at ≤ period/2 or ask for 0.
 */
export function buildLoad(addressSpace: AddressSpace, ns: Namespace, load: LoadOptions, logger: Logger): RunningLoad {
  validateLoad(load);
  const folder = ns.addFolder(addressSpace.rootFolder.objects, { nodeId: "s=Load", browseName: "Load" });
  const counters: UAVariable[] = new Array(load.count);
  for (let i = 0; i < load.count; i++) {
    const id = loadCounterId(i);
    counters[i] = ns.addVariable({
      nodeId: `s=${id}`,
      browseName: id.slice("Load.".length),
      organizedBy: folder,
      dataType: "UInt32",
      minimumSamplingInterval: 0,
      value: { dataType: DataType.UInt32, value: load.start ?? 0 },
    });
  }

  let value = load.start ?? 0;
  const tick = () => {
    value = (value + 1) >>> 0;
    const variant = new Variant({ dataType: DataType.UInt32, value });
    const now = new Date();
    for (const counter of counters) counter.setValueFromSource(variant, StatusCodes.Good, now);
  };

  // Ticks are scheduled against a fixed grid (start + k·period), not with setInterval, which
  // drifts later under load: the counters then keep their rate on average. When the process
  // falls far behind, the grid is reset rather than bursting through the missed ticks.
  const start = performance.now();
  let due = start + load.periodMs;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(run, Math.max(0, due - performance.now()));
    timer.unref();
  };
  const run = () => {
    try {
      tick();
    } catch (err) {
      logger.error({ err }, "load tick failed");
    }
    due += load.periodMs;
    const behind = performance.now() - due;
    if (behind > 10 * load.periodMs) {
      logger.warn({ behindMs: Math.round(behind), periodMs: load.periodMs }, "load counters fall behind; the process is overloaded");
      due = performance.now() + load.periodMs;
    }
    schedule();
  };
  schedule();
  logger.info({ count: load.count, periodMs: load.periodMs }, "load counters running");

  return {
    get value() {
      return value;
    },
    stop: () => {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
