import { existsSync } from "node:fs";
import path from "node:path";
import { loadInstance } from "../config/load.ts";
import { isKerfError, KerfError } from "../errors.ts";
import { silentLogger } from "../log.ts";
import { openClientPki } from "../opcua/trust/pki.ts";
import { prepareStateDir } from "./state-dir.ts";

/** Where the connector's OPC UA application certificate lives in its state directory. */
export function connectorCertificateFile(stateDir: string): string {
  return path.join(stateDir, "pki", "own", "certs", "client_certificate.pem");
}

/**
 * The connector's PKI in `<stateDir>/pki`, created when missing, exactly as `kerf run` would
 * create it: the commissioning commands come first on a new install (trust the machine, then
 * start the connector). The certificate names the instance id from the config, which is what
 * `kerf run` will use; one line on stderr says where it was made.
 */
export async function ensureConnectorPki(stateDir: string, configFile: string): Promise<void> {
  const certificateFile = connectorCertificateFile(stateDir);
  if (existsSync(certificateFile)) return;
  let instance: string;
  try {
    instance = await loadInstance(configFile);
  } catch (err) {
    if (!isKerfError(err)) throw err;
    throw new KerfError(err.code, `the connector has no OPC UA certificate in ${path.join(stateDir, "pki")} yet, and making one needs its instance id: ${err.message}`, {
      details: [...err.details, "give the connector's config with --config FILE (default $KERF_CONFIG or /etc/kerf/kerf.yaml, as for kerf run)"],
    });
  }
  prepareStateDir(stateDir);
  const pki = await openClientPki({ dir: path.join(stateDir, "pki"), instance, logger: silentLogger() });
  await pki.certificateManager.dispose();
  process.stderr.write(`kerf: created the connector's OPC UA certificate ${certificateFile} (instance ${instance}, applicationUri ${pki.applicationUri})\n`);
}
