import { X509Certificate } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { OPCUACertificateManager } from "node-opcua-certificate-manager";
import {
  MessageSecurityMode,
  OPCUAClient,
  SecurityPolicy,
  type ClientSession,
  type UserIdentityInfo,
} from "node-opcua-client";
import { silentLogger } from "../../src/log.ts";
import { startSimulator, type Simulator, type SimulatorOptions } from "../../src/simulator/server.ts";

export async function tempDir(prefix = "kerf-sim-"): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => fs.rm(dir, { recursive: true, force: true }) };
}

export async function startTestSimulator(dir: string, options: Partial<SimulatorOptions> = {}): Promise<Simulator> {
  return startSimulator({ pkiDir: path.join(dir, "server-pki"), logger: silentLogger(), ...options });
}

export interface TestClientPki {
  certificateManager: OPCUACertificateManager;
  certificateDer: Buffer;
  applicationUri: string;
  dispose(): Promise<void>;
}

/** A client trust store that accepts nothing it was not told to, with its own certificate made up front. */
export async function makeClientPki(dir: string, name: string): Promise<TestClientPki> {
  const certificateManager = new OPCUACertificateManager({
    rootFolder: path.join(dir, `${name}-pki`),
    automaticallyAcceptUnknownCertificate: false,
    disableFileWatchers: true,
  });
  await certificateManager.initialize();
  const applicationUri = `urn:kerf:test:${name}`;
  const certificateFile = path.join(certificateManager.rootDir, "own/certs/client_certificate.pem");
  await certificateManager.createSelfSignedCertificate({
    subject: `/CN=${name}/O=Kerf Test`,
    applicationUri,
    dns: ["localhost"],
    startDate: new Date(Date.now() - 60_000),
    validity: 30,
    outputFile: certificateFile,
  });
  const certificateDer = new X509Certificate(await fs.readFile(certificateFile)).raw;
  return { certificateManager, certificateDer, applicationUri, dispose: () => certificateManager.dispose() };
}

export interface Connected {
  client: OPCUAClient;
  session: ClientSession;
  close(): Promise<void>;
}

/** Connects with SignAndEncrypt / Basic256Sha256 unless told otherwise; no retries, so refusals surface at once. */
export async function connect(
  sim: Simulator,
  pki: TestClientPki,
  options: { securityMode?: MessageSecurityMode; securityPolicy?: SecurityPolicy; userIdentity?: UserIdentityInfo } = {},
): Promise<Connected> {
  const client = OPCUAClient.create({
    applicationName: "kerf-test",
    applicationUri: pki.applicationUri,
    clientCertificateManager: pki.certificateManager,
    securityMode: options.securityMode ?? MessageSecurityMode.SignAndEncrypt,
    securityPolicy: options.securityPolicy ?? SecurityPolicy.Basic256Sha256,
    endpointMustExist: false,
    connectionStrategy: { maxRetry: 0, initialDelay: 50, maxDelay: 100 },
    requestedSessionTimeout: 20_000,
  });
  try {
    await client.connect(sim.endpointUrl);
    const session = await client.createSession(options.userIdentity);
    return {
      client,
      session,
      close: async () => {
        await session.close().catch(() => undefined);
        await client.disconnect();
      },
    };
  } catch (err) {
    await client.disconnect().catch(() => undefined);
    throw err;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
