import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { silentLogger } from "../../src/log.ts";
import { openClientPki, type ConnectorPki } from "../../src/opcua/trust/pki.ts";
import type { EndpointSpec, NodeSpec } from "../../src/opcua/types.ts";
import { loadNodeId, ROGUE_NODES } from "../../src/simulator/nodes.ts";

/** The data point key of each rogue node, e.g. `rogue.hugeString`. */
export const ROGUE_KEYS = Object.fromEntries(
  Object.keys(ROGUE_NODES)
    .filter((k) => k !== "folder")
    .map((k) => [k, `rogue.${k}`]),
) as Record<Exclude<keyof typeof ROGUE_NODES, "folder">, string>;

export const COUNTER_KEY = "load.00000";

/** Where the simulator runs: what a test needs of it. */
export interface RogueSim {
  endpointUrl: string;
}

/**
 * The rogue simulator (huge values renewed every `periodMs`, one load counter) in a child
 * process, so that this process's memory is the client's alone; and a client PKI that both
 * sides trust.
 */
export async function startRogueSetup(dir: string, options: { periodMs: number }): Promise<{ sim: RogueSim; pki: ConnectorPki; stop: () => Promise<void> }> {
  const pki = await openClientPki({ dir: path.join(dir, "pki"), instance: "rogue-test", logger: silentLogger() });
  const certFile = path.join(dir, "client.der");
  await writeFile(certFile, pki.certificateDer);
  const child = spawn(process.execPath, [path.join(import.meta.dirname, "sim-child.ts"), path.join(dir, "sim"), String(options.periodMs), certFile], {
    stdio: ["ignore", "ignore", "inherit", "ipc"],
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    const killer = setTimeout(() => child.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(killer);
    await pki.certificateManager.dispose();
  };
  try {
    const ready = await new Promise<{ endpointUrl: string; certificateDer: string }>((resolve, reject) => {
      child.once("message", (m) => resolve(m as { endpointUrl: string; certificateDer: string }));
      child.once("exit", (code) => reject(new Error(`rogue simulator exited with ${code} before listening`)));
      setTimeout(() => reject(new Error("rogue simulator not listening after 30 s")), 30_000).unref();
    });
    await pki.certificateManager.trustCertificate(Buffer.from(ready.certificateDer, "base64"));
    return { sim: { endpointUrl: ready.endpointUrl }, pki, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** One group: every rogue node and the counter, so that the counter shares each publish with them. */
export function rogueSpec(sim: RogueSim, machine = "rogue"): EndpointSpec {
  const node = (key: string, id: string): NodeSpec => ({ key, node: id, samplingInterval: 0, queueSize: 10, discardOldest: true });
  const nodes = Object.entries(ROGUE_KEYS).map(([name, key]) => node(key, ROGUE_NODES[name as keyof typeof ROGUE_KEYS]));
  // a queue of 10 s: a round of huge values may hold up a publish for a second or more on a
  // busy machine, and the counter must then lose nothing, so that a gap means a lost publish
  nodes.push({ ...node(COUNTER_KEY, loadNodeId(0)), queueSize: 100 });
  return {
    machine,
    endpointUrl: sim.endpointUrl,
    securityMode: "SignAndEncrypt",
    securityPolicy: "Basic256Sha256",
    allowDeprecated: false,
    user: { type: "anonymous" },
    connectTimeoutMs: 10_000,
    sessionTimeoutMs: 30_000,
    groups: [{ name: "rogue", publishingInterval: 250, nodes }],
  };
}
