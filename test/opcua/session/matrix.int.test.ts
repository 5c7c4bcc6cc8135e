import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { Agent } from "../../../src/agent/agent.ts";
import { DevCaEnroller } from "../../../src/certs/identity.ts";
import { generateKeyPair, privateKeyToPem, signingAlgorithmFor, x509 } from "../../../src/certs/x509.ts";
import { loadConfig } from "../../../src/config/load.ts";
import { startDevCloud, type DevCloud } from "../../../src/devcloud/index.ts";
import { silentLogger } from "../../../src/log.ts";
import { openClientPki } from "../../../src/opcua/trust/pki.ts";
import { loadNodeId } from "../../../src/simulator/nodes.ts";
import { startSimulator, type Simulator } from "../../../src/simulator/server.ts";
import { tempDir, waitFor } from "../../helpers/env.ts";

const POLICIES = ["Basic128Rsa15", "Basic256", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"] as const;
const CHANNELS: { mode: string; policy: string }[] = [
  { mode: "None", policy: "None" },
  ...POLICIES.flatMap((policy) => ["Sign", "SignAndEncrypt"].map((mode) => ({ mode, policy }))),
];
const TOKENS = ["anonymous", "username", "certificate"] as const;
const COMBOS = CHANNELS.flatMap((c) => TOKENS.map((token) => ({ ...c, token, id: `m-${c.mode}-${c.policy}-${token}`.toLowerCase().replace(/_/g, "-") })));

describe("every security mode × policy × user token", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let sim: Simulator;
  let cloud: DevCloud;
  let agent: Agent;

  beforeAll(async () => {
    tmp = await tempDir();
    const logger = silentLogger();
    cloud = await startDevCloud({ dir: path.join(tmp.dir, "cloud"), logger });
    sim = await startSimulator({
      pkiDir: path.join(tmp.dir, "sim"),
      logger,
      users: [{ username: "operator", password: "s3cret-pw" }],
      load: { count: 1, periodMs: 200 },
      maxSessions: COMBOS.length + 10,
    });
    const stateDir = path.join(tmp.dir, "connector");
    const pki = await openClientPki({ dir: path.join(stateDir, "pki"), instance: "kerf-matrix", logger });
    await pki.certificateManager.trustCertificate(sim.certificateDer);
    await sim.trustClientCertificate(pki.certificateDer);
    await pki.certificateManager.dispose();

    // An X.509 user identity: RSA, as node-opcua requires, trusted by the server's user PKI.
    const keys = await generateKeyPair("rsa");
    const userCert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: "01",
      name: "CN=kerf matrix user",
      keys,
      signingAlgorithm: signingAlgorithmFor(keys.privateKey),
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 86_400_000),
      extensions: [new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.nonRepudiation | x509.KeyUsageFlags.keyEncipherment, true)],
    });
    await sim.trustUserCertificate(Buffer.from(userCert.rawData));
    const dir = path.join(tmp.dir, "config");
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, "user.pem"), userCert.toString("pem"));
    writeFileSync(path.join(dir, "user.key"), await privateKeyToPem(keys.privateKey), { mode: 0o600 });
    writeFileSync(path.join(dir, "password"), "s3cret-pw\n", { mode: 0o600 });

    const user = (token: string) =>
      token === "username"
        ? { type: "username", username: "operator", passwordFile: "./password" }
        : token === "certificate"
          ? { type: "certificate", certificateFile: "./user.pem", privateKeyFile: "./user.key" }
          : { type: "anonymous" };
    writeFileSync(
      path.join(dir, "kerf.yaml"),
      stringify({
        instance: "kerf-matrix",
        mapping: "./mapping.yaml",
        machines: COMBOS.map((c) => ({
          id: c.id,
          endpoint: sim.endpointUrl,
          security: { mode: c.mode, policy: c.policy, allowDeprecated: c.policy === "Basic128Rsa15" || c.policy === "Basic256" },
          user: user(c.token),
        })),
        cloud: { url: cloud.url, pins: [cloud.pin], caFile: cloud.ca.certFile, auth: { issuer: cloud.auth.issuer } },
      }),
    );
    const group = { name: "g", publishingInterval: 200, samplingInterval: 0, nodes: [{ key: "counter", node: loadNodeId(0) }] };
    writeFileSync(path.join(dir, "mapping.yaml"), stringify({ machines: Object.fromEntries(COMBOS.map((c) => [c.id, { groups: [group] }])) }));

    const loaded = await loadConfig(path.join(dir, "kerf.yaml"));
    agent = new Agent({ loaded, stateDir, logger, enroller: new DevCaEnroller(cloud.ca) });
    await agent.start();
  });

  afterAll(async () => {
    await agent?.stop();
    await sim?.stop();
    await cloud?.stop();
    await tmp?.cleanup();
  });

  it(`has ${COMBOS.length} combinations`, () => {
    expect(COMBOS.length).toBe(33);
  });

  it("each combination connects, subscribes and delivers values to devcloud", { timeout: 120_000 }, async () => {
    const missing = () => COMBOS.filter((c) => Number(cloud.store.latest(c.id)["counter"]?.v ?? 0) < 3);
    try {
      await waitFor("values from every combination", () => missing().length === 0, 90_000, 500);
    } catch (err) {
      const detail = missing().map((c) => `${c.id}: ${agent.sessions.find((s) => s.machine === c.id)?.health().lastError ?? "no error"}`);
      throw new Error(`${(err as Error).message}\n${detail.join("\n")}`);
    }
    for (const s of agent.sessions) {
      const combo = COMBOS.find((c) => c.id === s.machine)!;
      expect(s.security, s.machine).toEqual({ mode: combo.mode, policy: combo.policy });
    }
  });
});
