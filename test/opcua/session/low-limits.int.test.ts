import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger, silentLogger } from "../../../src/log.ts";
import { openClientPki } from "../../../src/opcua/trust/pki.ts";
import { MachineSession } from "../../../src/opcua/session/session.ts";
import type { GroupSpec } from "../../../src/opcua/types.ts";
import { loadNodeId } from "../../../src/simulator/nodes.ts";
import { startSimulator } from "../../../src/simulator/server.ts";
import type { Item, Message } from "../../../src/message.ts";
import { checkSeries, tempDir, waitFor } from "../../helpers/env.ts";
import { endpointSpec } from "../../helpers/opcua.ts";

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe("a server with low limits", () => {
  it("100 items per call and 2 subscriptions per session: every item of 3 groups still gets subscribed", { timeout: 60_000 }, async () => {
    const tmp = await tempDir();
    cleanups.push(tmp.cleanup);
    const sim = await startSimulator({
      pkiDir: path.join(tmp.dir, "sim"),
      logger: silentLogger(),
      load: { count: 450, periodMs: 200 },
      maxMonitoredItemsPerCall: 100,
      maxSubscriptionsPerSession: 2,
    });
    cleanups.push(() => sim.stop());
    const pki = await openClientPki({ dir: path.join(tmp.dir, "pki"), instance: "low-limits", logger: silentLogger() });
    cleanups.push(() => pki.certificateManager.dispose());
    await pki.certificateManager.trustCertificate(sim.certificateDer);
    await sim.trustClientCertificate(pki.certificateDer);

    const group = (name: string, from: number, to: number, publishingInterval: number): GroupSpec => ({
      name,
      publishingInterval,
      nodes: Array.from({ length: to - from }, (_, k) => ({ key: `c${from + k}`, node: loadNodeId(from + k), samplingInterval: 0, queueSize: 10, discardOldest: true })),
    });
    const spec = endpointSpec(sim, { groups: [group("a", 0, 150, 200), group("b", 150, 300, 500), group("c", 300, 450, 250)] });
    const messages: Message[] = [];
    const session = new MachineSession({ spec, pki, sink: { write: (m) => messages.push(...m) }, logger: silentLogger() });
    cleanups.push(() => session.stop());
    session.start();

    const seen = () => {
      const byKey = new Map<string, Item[]>();
      for (const m of messages) if (m.kind === "data") for (const i of m.items) byKey.set(i.key, [...(byKey.get(i.key) ?? []), i]);
      return byKey;
    };
    await waitFor("5 values from each of the 450 items", () => {
      const s = seen();
      return s.size === 450 && [...s.values()].every((v) => v.length >= 5);
    }, 30_000, 250).catch((err) => {
      throw new Error(`${err.message}: ${seen().size} items seen; ${session.health().lastError}`);
    });
    expect(session.state).toBe("connected");
    expect(session.health().connects).toBe(1);
    for (const [key, items] of seen()) expect(checkSeries(items).gaps, key).toEqual([]);
  });
});

describe("subscribing a large group", () => {
  it("shows its progress: a progress line that ends with every item counted", { timeout: 90_000 }, async () => {
    const tmp = await tempDir();
    cleanups.push(tmp.cleanup);
    const count = 5_000;
    const sim = await startSimulator({ pkiDir: path.join(tmp.dir, "sim"), logger: silentLogger(), load: { count, periodMs: 3_600_000 }, maxMonitoredItemsPerCall: 500 });
    cleanups.push(() => sim.stop());
    const pki = await openClientPki({ dir: path.join(tmp.dir, "pki"), instance: "progress", logger: silentLogger() });
    cleanups.push(() => pki.certificateManager.dispose());
    await pki.certificateManager.trustCertificate(sim.certificateDer);
    await sim.trustClientCertificate(pki.certificateDer);

    const nodes = Array.from({ length: count }, (_, k) => ({ key: `c${k}`, node: loadNodeId(k), samplingInterval: 0, queueSize: 1, discardOldest: true }));
    const spec = endpointSpec(sim, { groups: [{ name: "load", publishingInterval: 1_000, nodes }] });
    const lines: Record<string, unknown>[] = [];
    const logger = createLogger({ level: "info", destination: { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) } });
    const session = new MachineSession({ spec, pki, sink: { write: () => undefined }, logger });
    cleanups.push(() => session.stop());
    session.start();

    await waitFor("the subscribe's progress to end", () => lines.some((l) => l.event === "progress" && l.outcome !== undefined), 60_000, 100);
    const end = lines.find((l) => l.event === "progress" && l.outcome !== undefined);
    expect(end).toMatchObject({ group: "load", outcome: "done", done: count, total: count });
    expect(String(end!.operation)).toContain("subscribing group load");
  });
});
