import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { stringify } from "yaml";
import { writeFileAtomic } from "../certs/files.ts";
import { publicKeyPin } from "../certs/pins.ts";
import { generateKeyPair, privateKeyToPem } from "../certs/x509.ts";
import { startDevCloud, type DevCloud } from "../devcloud/index.ts";
import type { Logger } from "../log.ts";
import { openClientPki } from "../opcua/trust/pki.ts";
import type { SecurityModeName, SecurityPolicyName } from "../opcua/types.ts";
import { startSimulator, type Simulator } from "../simulator/server.ts";
import { loadNodeId, SIM_NODES, simulatorMapping } from "../simulator/nodes.ts";
import { SCOPES } from "../commands/actions.ts";
import { SERVICE_APP, setGrant } from "../devcloud/grants.ts";

export const DEMO_INSTANCE = "kerf-demo";
export const DEMO_MACHINE = "demo-saw";

export interface DemoOptions {
  stateDir: string;
  logger: Logger;
  out?: (line: string) => void;
  /** Load counters added to the mapping, for gap and duplicate checks. */
  load?: { count: number; periodMs: number };
  securityMode?: SecurityModeName;
  securityPolicy?: SecurityPolicyName;
  /** Mapping group settings for the machine's process values. */
  publishingInterval?: number;
  /** Start the simulator and devcloud on these ports (0 = any). */
  simulatorPort?: number;
  devcloudPort?: number;
  /** Lifetime of the devcloud's access tokens (kerf demo --token-ttl). Default the devcloud's. */
  tokenTtlSeconds?: number;
  /** Lifetime of the certificates the devcloud's EST server issues (default one year): short ones show renewals. */
  certTtlSeconds?: number;
  /** Aborting it during setup stops what was started so far; setupDemo then throws the abort reason. */
  signal?: AbortSignal;
  /**
   * Remote commands (issue 16): the connector's config gets a commands section pinning the
   * devcloud's command key (writes to the feed setpoint and the Acknowledge method allowed), and
   * the devcloud's service app `partner-app` a grant of every scope on the demo connector.
   */
  commands?: boolean;
  /** Told each piece that stop() ended, e.g. "the simulator (opc.tcp://127.0.0.1:4840)". */
  stopped?: (what: string) => void;
}

export interface Demo {
  configFile: string;
  devcloud: DevCloud;
  simulator: Simulator;
  units: Record<string, string>;
  securityMode: SecurityModeName;
  securityPolicy: SecurityPolicyName;
  connectorStateDir: string;
  stop(): Promise<void>;
}

/**
 * Everything around the connector on loopback: the simulated machine, the reference cloud,
 * the trust between them set up explicitly (no auto-accept), and the config and mapping
 * files the connector loads like any other.
 */
export async function setupDemo(options: DemoOptions): Promise<Demo> {
  const { stateDir, logger, signal } = options;
  const out = options.out ?? (() => undefined);
  const securityMode = options.securityMode ?? "SignAndEncrypt";
  const securityPolicy = options.securityPolicy ?? "Aes256_Sha256_RsaPss";
  const connectorStateDir = path.join(stateDir, "connector");
  mkdirSync(connectorStateDir, { recursive: true, mode: 0o700 });

  // What has been started, newest last; stop() ends it newest first, also when setup fails half-way.
  const running: { name: string; stop(): Promise<void> }[] = [];
  const stop = async () => {
    for (const r of running.splice(0).reverse()) {
      await r.stop().catch(() => undefined);
      options.stopped?.(r.name);
    }
  };
  try {
    signal?.throwIfAborted();
    const devcloud = await startDevCloud({
      dir: path.join(stateDir, "devcloud"),
      port: options.devcloudPort ?? 0,
      logger: logger.child({ component: "devcloud" }),
      ...(options.tokenTtlSeconds !== undefined ? { tokenTtlSeconds: options.tokenTtlSeconds } : {}),
      ...(options.certTtlSeconds !== undefined ? { certTtlSeconds: options.certTtlSeconds } : {}),
    });
    running.push({ name: `the devcloud (${devcloud.url})`, stop: () => devcloud.stop() });
    signal?.throwIfAborted();
    const simulator = await startSimulator({
      pkiDir: path.join(stateDir, "simulator-pki"),
      port: options.simulatorPort ?? 0,
      logger: logger.child({ component: "simulator" }),
      ...(options.load ? { load: options.load } : {}),
      alarmPeriodMs: 20_000,
    });
    running.push({ name: `the simulator (${simulator.endpointUrl})`, stop: () => simulator.stop() });
    signal?.throwIfAborted();

    // Trust both ways, explicitly, on first start: the connector's application certificate
    // in the simulator's trust list and the simulator's in the connector's.
    const pki = await openClientPki({ dir: path.join(connectorStateDir, "pki"), instance: DEMO_INSTANCE, logger });
    await pki.certificateManager.trustCertificate(simulator.certificateDer);
    await simulator.trustClientCertificate(pki.certificateDer);
    await pki.certificateManager.dispose();
    out(`demo: simulator ${simulator.endpointUrl} (certificate SHA-1 ${simulator.thumbprint}) and connector trust each other`);
    out(`demo: devcloud ${devcloud.url} (pin ${devcloud.pin}), access tokens from ${devcloud.auth.issuer} (${devcloud.auth.tokenTtlSeconds} s)`);

    const { configFile, units } = await writeDemoConfig({
      dir: path.join(stateDir, "config"),
      endpointUrl: simulator.endpointUrl,
      devcloud,
      securityMode,
      securityPolicy,
      // The connector enrols over EST on its first start, with a one-time token as an administrator would hand it out.
      enrolment: { url: devcloud.est.url, token: devcloud.est.issueBootstrapToken(DEMO_INSTANCE) },
      ...(options.load ? { load: options.load } : {}),
      ...(options.publishingInterval ? { publishingInterval: options.publishingInterval } : {}),
      ...(options.commands ? { commandKeysFile: devcloud.commandKeysFile } : {}),
    });
    if (options.commands) setGrant(devcloud.dir, SERVICE_APP, DEMO_INSTANCE, SCOPES);
    signal?.throwIfAborted();
    return { configFile, devcloud, simulator, units, securityMode, securityPolicy, connectorStateDir, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * The connector's config and mapping for the simulated machine: its process values, plus load
 * counters when asked. The files are loaded like any user's, through the real loader.
 */
export async function writeDemoConfig(o: {
  dir: string;
  endpointUrl: string;
  devcloud: { url: string; pin: string; ca: { certFile: string }; auth?: { issuer: string } };
  securityMode: SecurityModeName;
  securityPolicy: SecurityPolicyName;
  load?: { count: number; periodMs: number };
  publishingInterval?: number;
  /** The devcloud's command-signing keys: adds the demo's commands section (local policy). */
  commandKeysFile?: string;
  /** EST enrolment: the token goes to bootstrap.token (0600) beside the config. Without it the identity must be issued beforehand. */
  enrolment?: { url: string; token: string };
}): Promise<{ configFile: string; units: Record<string, string> }> {
  const map = simulatorMapping(DEMO_MACHINE);
  const units: Record<string, string> = {};
  for (const p of map.points) if (p.unit) units[p.key] = p.unit;
  const pi = o.publishingInterval ?? 250;
  const groups: unknown[] = [
    {
      name: "process",
      publishingInterval: pi,
      samplingInterval: pi,
      queueSize: 10,
      nodes: map.points.map((p) => ({ key: p.key, node: p.node, ...(p.unit ? { unit: p.unit } : {}) })),
      // The dust-extraction alarm, as events (AlarmConditionType and subtypes).
      events: map.events.map((e) => ({ key: e.key, notifier: e.notifier, eventType: "i=2915" })),
    },
  ];
  if (o.load) {
    groups.push({
      name: "load",
      publishingInterval: o.load.periodMs,
      // 0 = report every change: sampling at the counters' own period would now and then
      // fall between two ticks and skip a value.
      samplingInterval: 0,
      queueSize: 10,
      nodes: Array.from({ length: o.load.count }, (_, i) => ({ key: `load.${String(i).padStart(5, "0")}`, node: loadNodeId(i) })),
    });
  }
  // A backup pin names a key that is not in service yet: the key the cloud would rotate to.
  const backupKey = await generateKeyPair("ec");
  const backupPin = publicKeyPin(await privateKeyToPem(backupKey.privateKey));
  mkdirSync(o.dir, { recursive: true });
  const configFile = path.join(o.dir, "kerf.yaml");
  if (o.enrolment) writeFileAtomic(path.join(o.dir, "bootstrap.token"), o.enrolment.token + "\n", 0o600);
  writeFileSync(path.join(o.dir, "mapping.yaml"), stringify({ machines: { [DEMO_MACHINE]: { groups } } }));
  writeFileSync(
    configFile,
    stringify({
      instance: DEMO_INSTANCE,
      log: { level: "warn" },
      mapping: "./mapping.yaml",
      machines: [{ id: DEMO_MACHINE, endpoint: o.endpointUrl, security: { mode: o.securityMode, policy: o.securityPolicy } }],
      cloud: {
        url: o.devcloud.url,
        pins: [o.devcloud.pin, backupPin],
        caFile: o.devcloud.ca.certFile,
        ...(o.devcloud.auth ? { auth: { issuer: o.devcloud.auth.issuer } } : {}),
        ...(o.enrolment ? { enrolment: { url: o.enrolment.url, tokenFile: "./bootstrap.token" } } : {}),
      },
      buffer: { maxBytes: "256MiB" },
      ...(o.commandKeysFile ? { commands: demoCommandPolicy(o.commandKeysFile) } : {}),
    }),
  );
  return { configFile, units };
}

/** The demo owner's local policy: reads, mapping changes, diagnostics; one writable node and one method. */
function demoCommandPolicy(keys: string) {
  return {
    keys,
    actions: ["status", "read", "browse", "mapping.get", "mapping.set", "write", "call", "identity.renew", "update.check", "diagnostics", "restart"],
    machines: {
      [DEMO_MACHINE]: {
        write: [{ node: SIM_NODES.feedSetpoint, type: "Double", min: 0, max: 60 }],
        call: [{ object: SIM_NODES.vendorObject, method: SIM_NODES.acknowledge, inputs: ["String"] }],
      },
    },
  };
}
