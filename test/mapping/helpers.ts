import path from "node:path";
import { Writable } from "node:stream";
import { MessageSecurityMode, OPCUAClient, SecurityPolicy, type ClientSession } from "node-opcua-client";
import { pino } from "pino";
import type { Logger } from "../../src/log.ts";
import { SubscriptionSet } from "../../src/opcua/subscription/subscriptions.ts";
import type { GroupSpec, NodeSpec } from "../../src/opcua/types.ts";
import { startSimulator, type Simulator, type SimulatorOptions } from "../../src/simulator/server.ts";
import type { EventMessage, Item, Message } from "../../src/message.ts";
import { tempDir } from "../helpers/env.ts";

export { waitFor, checkSeries } from "../helpers/env.ts";

export interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** A real pino logger whose lines the test can read. */
export function recordingLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split("\n")) if (line.trim()) lines.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  return { logger: pino({ level: "debug" }, stream), lines };
}

export interface Bench {
  sim: Simulator;
  session: ClientSession;
  namespaceArray: string[];
  stop(): Promise<void>;
}

/** A simulator and one plain (SecurityMode None) session to it: security is not what these tests are about. */
export async function startBench(options: Partial<SimulatorOptions> = {}): Promise<Bench> {
  const tmp = await tempDir("kerf-mapping-");
  const sim = await startSimulator({ pkiDir: path.join(tmp.dir, "sim"), logger: pino({ level: "silent" }), ...options });
  const client = OPCUAClient.create({
    endpointMustExist: false,
    securityMode: MessageSecurityMode.None,
    securityPolicy: SecurityPolicy.None,
    connectionStrategy: { maxRetry: 0 },
  });
  await client.connect(sim.endpointUrl);
  const session = await client.createSession();
  const namespaceArray = await session.readNamespaceArray();
  return {
    sim,
    session,
    namespaceArray,
    async stop() {
      await session.close().catch(() => undefined);
      await client.disconnect().catch(() => undefined);
      await sim.stop();
      await tmp.cleanup();
    },
  };
}

export interface Harness {
  set: SubscriptionSet;
  messages: Message[];
  lines: LogLine[];
  /** Every data item of `key`, in arrival order; with `since`, only those of messages[since..]. */
  items(key: string, since?: number): Item[];
  events(key?: string): EventMessage[];
  /** Deletes the subscriptions (apply of an empty mapping) and stops the heartbeats. */
  dispose(): Promise<void>;
}

/** A SubscriptionSet on the bench's session whose sink collects what it writes. */
export async function subscribe(bench: Bench, groups: GroupSpec[], lastDelivered = new Map<string, Item>()): Promise<Harness> {
  const messages: Message[] = [];
  const { logger, lines } = recordingLogger();
  const set = new SubscriptionSet({
    session: bench.session,
    machine: "saw",
    groups,
    namespaceArray: bench.namespaceArray,
    maxItemsPerCall: 0,
    sink: { write: (msgs) => messages.push(...msgs) },
    logger,
    onData: () => undefined,
    onFailure: (reason) => lines.push({ level: 60, msg: `onFailure: ${reason}` }),
    lastDelivered,
    sequence: { duplicates: 0, recovered: 0, lost: 0 },
  });
  await set.create();
  return {
    set,
    messages,
    lines,
    items: (key, since = 0) => messages.slice(since).flatMap((m) => (m.kind === "data" ? m.items.filter((i) => i.key === key) : [])),
    events: (key) => messages.filter((m): m is EventMessage => m.kind === "event" && (key === undefined || m.key === key)),
    async dispose() {
      await set.apply([]);
      set.close();
    },
  };
}

export function point(key: string, node: string, extra: Partial<NodeSpec> = {}): NodeSpec {
  return { key, node, samplingInterval: 0, queueSize: 100, discardOldest: true, ...extra };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
