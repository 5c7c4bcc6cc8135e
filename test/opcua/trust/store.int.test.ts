import { readdirSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { silentLogger } from "../../../src/log.ts";
import { openClientPki } from "../../../src/opcua/trust/pki.ts";
import { MachineSession } from "../../../src/opcua/session/session.ts";
import type { EndpointSpec } from "../../../src/opcua/types.ts";
import { SIM_NODES } from "../../../src/simulator/nodes.ts";
import { startSimulator, type Simulator } from "../../../src/simulator/server.ts";
import type { Message } from "../../../src/message.ts";
import { tempDir, waitFor } from "../../helpers/env.ts";
import { endpointSpec } from "../../helpers/opcua.ts";

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function spec(sim: Simulator): EndpointSpec {
  return endpointSpec(sim, {
    groups: [{ name: "g", publishingInterval: 100, nodes: [{ key: "spindle", node: SIM_NODES.spindleSpeed, samplingInterval: 100, queueSize: 10, discardOldest: true }] }],
  });
}

describe("OPC UA trust store", () => {
  it("refuses an unknown server certificate, keeps it in rejected/, and connects once it is trusted", async () => {
    const tmp = await tempDir();
    cleanups.push(tmp.cleanup);
    const sim = await startSimulator({ pkiDir: path.join(tmp.dir, "sim"), logger: silentLogger() });
    cleanups.push(() => sim.stop());
    const pki = await openClientPki({ dir: path.join(tmp.dir, "pki"), instance: "trust-test", logger: silentLogger() });
    cleanups.push(() => pki.certificateManager.dispose());
    await sim.trustClientCertificate(pki.certificateDer);

    const messages: Message[] = [];
    const session = new MachineSession({ spec: spec(sim), pki, sink: { write: (m) => messages.push(...m) }, logger: silentLogger(), backoff: { initialMs: 100, maxMs: 300 } });
    cleanups.push(() => session.stop());
    session.start();

    const error = await waitFor("a refused connection", () => session.health().lastError ?? undefined, 15_000);
    expect(error).toMatch(/trust/i);
    expect(session.health().lastErrorCode).toBe("OPCUA_UNTRUSTED_CERT");
    expect(session.state).not.toBe("connected");
    const rejected = path.join(pki.certificateManager.rootDir, "rejected");
    await waitFor("the server certificate in rejected/", () => readdirSync(rejected).length > 0, 15_000);
    expect(messages.some((m) => m.kind === "data")).toBe(false);
    expect(messages.find((m) => m.kind === "status")).toMatchObject({ state: "offline" });

    // The operator trusts it (what `kerf trust accept` does): the next attempt connects.
    await pki.certificateManager.trustCertificate(sim.certificateDer);
    await waitFor("connected", () => session.state === "connected", 15_000);
    await waitFor("a spindle value", () => messages.some((m) => m.kind === "data" && m.items.some((i) => i.key === "spindle")), 10_000);
    expect(messages.some((m) => m.kind === "status" && m.state === "online")).toBe(true);
  });

  it("a refusal recorded after the operator's accept leaves the certificate trusted", async () => {
    const tmp = await tempDir();
    cleanups.push(tmp.cleanup);
    const server = await openClientPki({ dir: path.join(tmp.dir, "server"), instance: "some-server", logger: silentLogger() });
    cleanups.push(() => server.certificateManager.dispose());
    const pki = await openClientPki({ dir: path.join(tmp.dir, "pki"), instance: "trust-test", logger: silentLogger() });
    cleanups.push(() => pki.certificateManager.dispose());
    const cm = pki.certificateManager;
    // A connect attempt refused the unknown certificate: it is in rejected/.
    expect(String(await cm.checkCertificate(server.certificateDer))).toMatch(/BadCertificateUntrusted/);
    expect(readdirSync(cm.rejectedFolder)).toHaveLength(1);

    // The operator accepts; then the verdict of an attempt that began before is recorded, as
    // node-opcua does, by rejecting the certificate.
    await cm.trustCertificate(server.certificateDer);
    await cm.rejectCertificate(server.certificateDer);

    expect(readdirSync(cm.rejectedFolder)).toEqual([]);
    expect(readdirSync(cm.trustedFolder)).toHaveLength(1);
    expect(String(await cm.verifyCertificate(server.certificateDer))).toBe("Good");
  });
});
