import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger, silentLogger } from "../../../src/log.ts";
import { openClientPki } from "../../../src/opcua/trust/pki.ts";
import { MachineSession } from "../../../src/opcua/session/session.ts";
import { loadNodeId } from "../../../src/simulator/nodes.ts";
import { startSimulator } from "../../../src/simulator/server.ts";
import { tempDir, waitFor } from "../../helpers/env.ts";
import { endpointSpec } from "../../helpers/opcua.ts";

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
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
