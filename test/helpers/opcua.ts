import path from "node:path";
import { silentLogger } from "../../src/log.ts";
import { openClientPki, type ConnectorPki } from "../../src/opcua/trust/pki.ts";
import type { EndpointSpec } from "../../src/opcua/types.ts";
import { startSimulator, type Simulator, type SimulatorOptions } from "../../src/simulator/server.ts";

/** A SignAndEncrypt/Basic256Sha256 anonymous spec for `sim`, with the fields a test changes. */
export function endpointSpec(sim: Pick<Simulator, "endpointUrl">, over: Partial<EndpointSpec> = {}): EndpointSpec {
  return {
    machine: "saw",
    endpointUrl: sim.endpointUrl,
    securityMode: "SignAndEncrypt",
    securityPolicy: "Basic256Sha256",
    allowDeprecated: false,
    user: { type: "anonymous" },
    connectTimeoutMs: 5000,
    sessionTimeoutMs: 20000,
    groups: [],
    ...over,
  };
}

/**
 * A simulator and a connector PKI in `dir`, the connector's certificate trusted by the simulator
 * and (unless `trustServer` is false) the simulator's by the connector. Cleanups go to `cleanups`.
 */
export async function simulatorAndPki(
  dir: string,
  cleanups: (() => Promise<unknown>)[],
  simOptions: Partial<SimulatorOptions> = {},
  trustServer = true,
): Promise<{ sim: Simulator; pki: ConnectorPki }> {
  const sim = await startSimulator({ pkiDir: path.join(dir, "sim"), logger: silentLogger(), ...simOptions });
  cleanups.push(() => sim.stop());
  const pki = await openClientPki({ dir: path.join(dir, "pki"), instance: "kerf-test", logger: silentLogger() });
  cleanups.push(() => pki.certificateManager.dispose());
  if (trustServer) await pki.certificateManager.trustCertificate(sim.certificateDer);
  await sim.trustClientCertificate(pki.certificateDer);
  return { sim, pki };
}
