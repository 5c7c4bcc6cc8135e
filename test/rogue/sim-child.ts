/**
 * The rogue simulator in a child process, so that a test's own memory is the client's alone.
 * Usage: node sim-child.ts <pki dir> <period ms> <client certificate DER file>
 * Sends { endpointUrl, certificateDer (base64) } over IPC once listening; stops on SIGTERM or
 * when the parent goes away.
 */
import { readFile } from "node:fs/promises";
import { silentLogger } from "../../src/log.ts";
import { startSimulator } from "../../src/simulator/server.ts";

const [pkiDir, period, clientCertFile] = process.argv.slice(2);
if (!pkiDir || !period || !clientCertFile || !process.send) throw new Error("usage: node sim-child.ts <pki dir> <period ms> <client certificate DER file>, with an IPC channel");

const sim = await startSimulator({ pkiDir, logger: silentLogger(), rogue: { periodMs: Number(period) }, load: { count: 1, periodMs: 100 } });
await sim.trustClientCertificate(await readFile(clientCertFile));
let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await sim.stop().catch(() => undefined);
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("disconnect", stop);
process.send({ endpointUrl: sim.endpointUrl, certificateDer: sim.certificateDer.toString("base64") });
