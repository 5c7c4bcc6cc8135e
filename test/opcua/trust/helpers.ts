import { spawn } from "node:child_process";
import path from "node:path";
import { Writable } from "node:stream";
import { MessageSecurityMode, OPCUAClient, SecurityPolicy } from "node-opcua-client";
import { pino, type Logger } from "pino";
import { silentLogger } from "../../../src/log.ts";
import { checkServerCertificate } from "../../../src/opcua/trust/cert-checks.ts";
import { routeOpcuaLogging } from "../../../src/opcua/logging.ts";
import { openClientPki, type ClientPki, type ConnectorPki } from "../../../src/opcua/trust/pki.ts";
import type { EndpointSpec } from "../../../src/opcua/types.ts";
import { SIM_NODES } from "../../../src/simulator/nodes.ts";
import { startSimulator, type Simulator, type SimulatorOptions } from "../../../src/simulator/server.ts";
import { tempDir } from "../../helpers/env.ts";
import { endpointSpec } from "../../helpers/opcua.ts";
import { placeSimulatorCertificate, type TestCert } from "./certs.ts";

const ROOT = path.resolve(import.meta.dirname, "../../..");

// node-opcua prints every refused certificate at length; the tests assert on our messages instead.
routeOpcuaLogging(silentLogger());

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `kerf <args>` as a child process, the way an operator runs it. */
export function kerf(...args: string[]): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    delete env.KERF_STATE_DIR;
    const child = spawn(process.execPath, ["src/main.ts", ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** Cleanups run in reverse order after each test. */
export function cleanupList() {
  const list: (() => Promise<unknown>)[] = [];
  return {
    add: (fn: () => Promise<unknown>) => list.push(fn),
    run: async () => {
      for (const fn of list.splice(0).reverse()) await fn().catch(() => undefined);
    },
  };
}

export interface Bench {
  dir: string;
  /** The connector's state dir: its PKI is `<stateDir>/pki`. */
  stateDir: string;
  pki: ConnectorPki;
}

/** A temp dir with a connector PKI in `<dir>/state/pki`, as `kerf run` makes it. */
export async function bench(cleanups: ReturnType<typeof cleanupList>): Promise<Bench> {
  const tmp = await tempDir("kerf-trust-");
  cleanups.add(tmp.cleanup);
  const stateDir = path.join(tmp.dir, "state");
  const pki = await openClientPki({ dir: path.join(stateDir, "pki"), instance: "trust-test", logger: silentLogger() });
  cleanups.add(() => pki.certificateManager.dispose());
  return { dir: tmp.dir, stateDir, pki };
}

/** A simulator presenting `cert` (or its own self-made one), trusting the bench's connector certificate. */
export async function simulator(b: Bench, cleanups: ReturnType<typeof cleanupList>, name: string, cert?: TestCert, options: Partial<SimulatorOptions> = {}): Promise<Simulator> {
  const pkiDir = path.join(b.dir, `sim-${name}`);
  if (cert) await placeSimulatorCertificate(pkiDir, cert);
  const sim = await startSimulator({ pkiDir, logger: silentLogger(), tickMs: 50, ...options });
  cleanups.add(() => sim.stop());
  await sim.trustClientCertificate(b.pki.certificateDer);
  return sim;
}

export function spec(sim: Pick<Simulator, "endpointUrl">, extra: Partial<EndpointSpec> = {}): EndpointSpec {
  return endpointSpec(sim, {
    groups: [{ name: "g", publishingInterval: 100, nodes: [{ key: "spindle", node: SIM_NODES.spindleSpeed, samplingInterval: 100, queueSize: 10, discardOldest: true }] }],
    ...extra,
  });
}

/**
 * Connects as the session does (SignAndEncrypt through the connector's trust store) and runs
 * the post-connect certificate check on the endpoint the channel uses. Resolves with node-opcua's
 * error, or with checkServerCertificate's verdict.
 */
export async function connectAndCheck(s: EndpointSpec, pki: ClientPki, logger: Logger = silentLogger()): Promise<{ error?: Error; refusal?: string }> {
  const client = OPCUAClient.create({
    applicationName: "Kerf",
    applicationUri: pki.applicationUri,
    clientCertificateManager: pki.certificateManager,
    certificateFile: pki.certificateFile,
    privateKeyFile: pki.privateKeyFile,
    securityMode: MessageSecurityMode.SignAndEncrypt,
    securityPolicy: SecurityPolicy.Basic256Sha256,
    endpointMustExist: true,
    connectionStrategy: { maxRetry: 0 },
  });
  try {
    await client.connect(s.endpointUrl);
  } catch (error) {
    return { error: error as Error };
  }
  try {
    const endpoint = client.findEndpointForSecurity(MessageSecurityMode.SignAndEncrypt, SecurityPolicy.Basic256Sha256);
    if (!endpoint) throw new Error("no endpoint for the channel");
    return { refusal: checkServerCertificate(s, endpoint, logger) };
  } finally {
    await client.disconnect();
  }
}

/** A pino logger whose lines (parsed) land in `lines`. */
export function capturingLogger(): { logger: Logger; lines: { level: number; msg: string; [k: string]: unknown }[] } {
  const lines: { level: number; msg: string }[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split("\n")) if (l.trim()) lines.push(JSON.parse(l) as { level: number; msg: string });
      done();
    },
  });
  return { logger: pino({ level: "debug" }, stream), lines };
}

export const WARN = 40;
