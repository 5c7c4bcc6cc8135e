import { createHash, timingSafeEqual } from "node:crypto";
import type { OPCUACertificateManager } from "node-opcua-certificate-manager";
import { nodesets } from "node-opcua-nodesets";
import { SecurityPolicy } from "node-opcua-secure-channel";
import { OPCUAServer, Subscription } from "node-opcua-server";
import { MessageSecurityMode } from "node-opcua-service-secure-channel";
import { KerfError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { buildLoad, type RunningLoad } from "./load.ts";
import { validateLoad, type LoadOptions } from "./load-options.ts";
import { SIMULATOR_NAMESPACE_URI } from "./nodes.ts";
import { disposeQuietly, openServerPki } from "./pki.ts";
import { buildRogue, type RogueOptions, type RunningRogue } from "./rogue.ts";
import { buildRogueDecoding, type RunningRogueDecoding } from "./rogue-decoding.ts";
import { buildMachine, type RunningMachine } from "./woodworking.ts";

export interface SimulatorOptions {
  /** Default 0: the OS picks a free port; read it back from `port`. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** The server's own PKI folder (own key and certificate, trusted/, rejected/, user/). */
  pkiDir: string;
  /** Load mode: `count` UInt32 counters under Objects/Load, all +1 every `periodMs`. */
  load?: LoadOptions;
  /** Username tokens accepted; none by default. */
  users?: { username: string; password: string }[];
  /** Default true. */
  allowAnonymous?: boolean;
  logger: Logger;
  maxSessions?: number;
  /** Namespaces registered before the simulator's own, shifting its index (a server whose namespaces moved after an update). */
  extraNamespaces?: string[];
  /** Offer only these (default: all). Lets tests stand in for an old or misconfigured machine. */
  securityModes?: MessageSecurityMode[];
  securityPolicies?: SecurityPolicy[];
  maxSubscriptionsPerSession?: number;
  /** OperationLimits.MaxMonitoredItemsPerCall (ns=0;i=11714); more items in one call get BadTooManyOperations. */
  maxMonitoredItemsPerCall?: number;
  /** Subscriptions on the whole server; more get BadTooManySubscriptions. */
  maxSubscriptions?: number;
  /** Monitored items on the whole server; more get BadTooManyMonitoredItems, item by item. */
  maxMonitoredItems?: number;
  /** Monitored items per subscription; more get BadTooManyMonitoredItems, item by item. */
  maxMonitoredItemsPerSubscription?: number;
  /**
   * Most notifications in one publish response, whatever a client asks for; node-opcua's default
   * is 1,000. Process-wide in node-opcua: every server in this process gets it.
   */
  maxNotificationsPerPublish?: number;
  /** Rogue mode: hostile values under Objects/Rogue (`ROGUE_NODES`); off by default. */
  rogue?: boolean | RogueOptions;
  /** How often the machine's process values move; default 100 ms. */
  tickMs?: number;
  /** One dust-extraction alarm (active, then cleared) per period; default 60 s. */
  alarmPeriodMs?: number;
  /** Seed of the machine's noise, for repeatable runs. */
  seed?: number;
  /** Pick up certificates copied into trusted/ while running (file watchers); default false. */
  watchTrustStore?: boolean;
  /** Announce this applicationUri instead of the certificate's: a misconfigured server, for trust tests. */
  applicationUri?: string;
}

export interface Simulator {
  /** opc.tcp://<host>:<port>, reachable from this machine. */
  endpointUrl: string;
  port: number;
  /** The server's application instance certificate (DER). */
  certificateDer: Buffer;
  /** PEM file of that certificate. */
  certificateFile: string;
  /** SHA-1 thumbprint of the certificate, lower-case hex. */
  thumbprint: string;
  applicationUri: string;
  certificateManager: OPCUACertificateManager;
  /** Our own namespace, "urn:kerf:simulator". */
  namespaceUri: string;
  /** Milliseconds from the call to a listening server. */
  startupMs: number;
  /** Lets a client's application certificate open secure channels. */
  trustClientCertificate(der: Buffer): Promise<void>;
  /** Lets a certificate log in as an X.509 user identity token. */
  trustUserCertificate(der: Buffer): Promise<void>;
  /** Logins refused for a wrong user name or password since start (what locks an account on a real machine). */
  readonly loginsRefused: number;
  /** The current value of a variable in its address space (`nsu=` or `ns=` form), e.g. after a remote write. */
  valueOf(nodeId: string): unknown;
  /** In load mode, the value every load counter holds now (see load.ts); undefined without load. */
  readonly loadValue: number | undefined;
  stop(): Promise<void>;
}

/** Every security policy node-opcua implements, each offered with Sign and SignAndEncrypt. */
export const SECURITY_POLICIES = [
  SecurityPolicy.None,
  SecurityPolicy.Basic128Rsa15,
  SecurityPolicy.Basic256,
  SecurityPolicy.Basic256Sha256,
  SecurityPolicy.Aes128_Sha256_RsaOaep,
  SecurityPolicy.Aes256_Sha256_RsaPss,
];

const NODESETS = [
  nodesets.standard,
  nodesets.di,
  nodesets.ia, // Machinery requires it
  nodesets.machinery,
  nodesets.isa95JobControl, // Machinery Jobs requires it; Woodworking requires both
  nodesets.machineryJobs,
  nodesets.woodWorking,
];

/** Starts the simulated woodworking machine: an OPC UA server with one WwMachineType. */
export async function startSimulator(options: SimulatorOptions): Promise<Simulator> {
  const started = performance.now();
  const log = options.logger.child({ component: "simulator" });
  if (options.load) validateLoad(options.load);
  const perPublishBefore = Subscription.maxNotificationPerPublishHighLimit;
  const restorePerPublish = () => {
    if (options.maxNotificationsPerPublish !== undefined) Subscription.maxNotificationPerPublishHighLimit = perPublishBefore;
  };
  const host = options.host ?? "127.0.0.1";
  const wildcard = host === "0.0.0.0" || host === "::";

  const pki = await openServerPki(options.pkiDir, { watchTrustStore: options.watchTrustStore, hosts: [host] });
  const pkiMs = performance.now() - started;
  let machine: RunningMachine | undefined;
  let load: RunningLoad | undefined;
  let rogue: RunningRogue | undefined;
  let rogueDecoding: RunningRogueDecoding | undefined;
  let server: OPCUAServer | undefined;
  const checkUser = userCheck(options.users ?? []);
  let loginsRefused = 0;
  try {
    if (options.maxNotificationsPerPublish !== undefined) Subscription.maxNotificationPerPublishHighLimit = options.maxNotificationsPerPublish;
    server = new OPCUAServer({
      port: options.port ?? 0,
      host,
      // the hostname goes into the advertised endpoint URLs; a wildcard host advertises the FQDN
      hostname: wildcard ? undefined : host,
      serverCertificateManager: pki.certificateManager,
      userCertificateManager: pki.userCertificateManager,
      serverInfo: {
        applicationUri: options.applicationUri ?? pki.applicationUri,
        productUri: SIMULATOR_NAMESPACE_URI,
        applicationName: { text: "Kerf Simulator", locale: "en" },
      },
      buildInfo: { productName: "Kerf Simulator", manufacturerName: "Kerf", softwareVersion: "0.1.0" },
      nodeset_filename: NODESETS,
      securityPolicies: options.securityPolicies ?? SECURITY_POLICIES,
      securityModes: options.securityModes ?? [MessageSecurityMode.None, MessageSecurityMode.Sign, MessageSecurityMode.SignAndEncrypt],
      allowAnonymous: options.allowAnonymous ?? true,
      // Each client also opens a short discovery connection; many machines on one simulator need room.
      maxConnectionsPerEndpoint: Math.max(20, 2 * (options.maxSessions ?? 10)),
      userManager: {
        isValidUser: (username: string, password: string) => {
          const ok = checkUser(username, password);
          if (!ok) loginsRefused++;
          return ok;
        },
      },
      serverCapabilities: {
        maxSessions: options.maxSessions,
        maxSubscriptionsPerSession: options.maxSubscriptionsPerSession,
        maxSubscriptions: options.maxSubscriptions,
        maxMonitoredItems: options.maxMonitoredItems,
        maxMonitoredItemsPerSubscription: options.maxMonitoredItemsPerSubscription,
        // 0: an item that asks for sampling interval 0 gets every change, not one per 50 ms window;
        // the load counters rely on it to be exact at any period
        minSupportedSampleRate: 0,
        operationLimits: { maxMonitoredItemsPerCall: options.maxMonitoredItemsPerCall },
      },
    });
    await server.initialize();
    const initializedMs = performance.now() - started;
    const addressSpace = server.engine.addressSpace;
    if (!addressSpace) throw new KerfError("INTERNAL", "node-opcua server has no address space after initialize()");
    // Binds ConditionRefresh(2), Acknowledge, Confirm… on ConditionType; without it a client's
    // ConditionRefresh fails with BadInternalError ("method has not been bound").
    addressSpace.installAlarmsAndConditionsService();
    for (const uri of options.extraNamespaces ?? []) addressSpace.registerNamespace(uri);
    const ns = addressSpace.registerNamespace(SIMULATOR_NAMESPACE_URI);
    machine = buildMachine(addressSpace, ns, log, { tickMs: options.tickMs, alarmPeriodMs: options.alarmPeriodMs, seed: options.seed });
    if (options.load) load = buildLoad(addressSpace, ns, options.load, log);
    if (options.rogue) {
      const rogueOptions = options.rogue === true ? {} : options.rogue;
      rogue = buildRogue(addressSpace, ns, rogueOptions, log);
      rogueDecoding = buildRogueDecoding(addressSpace, ns, rogueOptions, log);
      rogueDecoding.hangReads(server);
    }
    const builtMs = performance.now() - started;
    await server.start();
    log.debug({ pkiMs: Math.round(pkiMs), initializedMs: Math.round(initializedMs), builtMs: Math.round(builtMs) }, "startup phases");
  } catch (err) {
    machine?.stop();
    load?.stop();
    rogue?.stop();
    rogueDecoding?.stop();
    await server?.shutdown().catch(() => undefined);
    restorePerPublish();
    await disposeQuietly(pki.certificateManager);
    await disposeQuietly(pki.userCertificateManager);
    throw listenError(err, host, options.port ?? 0);
  }

  const port = server.endpoints[0]!.port;
  const urlHost = wildcard ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
  const endpointUrl = `opc.tcp://${urlHost}:${port}`;
  const startupMs = Math.round(performance.now() - started);
  log.info({ endpointUrl, thumbprint: pki.thumbprint, startupMs }, "simulator listening");

  let stopping: Promise<void> | undefined;
  const running = server;
  return {
    endpointUrl,
    port,
    certificateDer: pki.certificateDer,
    certificateFile: pki.certificateFile,
    thumbprint: pki.thumbprint,
    applicationUri: pki.applicationUri,
    certificateManager: pki.certificateManager,
    namespaceUri: SIMULATOR_NAMESPACE_URI,
    startupMs,
    trustClientCertificate: (der) => pki.certificateManager.trustCertificate(der),
    trustUserCertificate: (der) => pki.userCertificateManager.trustCertificate(der),
    get loginsRefused() {
      return loginsRefused;
    },
    valueOf: (nodeId) => {
      const space = running.engine.addressSpace!;
      const m = /^nsu=([^;]+);(.*)$/.exec(nodeId);
      const id = m ? `ns=${space.getNamespaceIndex(m[1]!)};${m[2]}` : nodeId;
      const node = space.findNode(id) as { readValue?: () => { value: { value: unknown } } } | null;
      return node?.readValue?.().value.value;
    },
    get loadValue() {
      return load?.value;
    },
    stop: () => {
      stopping ??= (async () => {
        machine?.stop();
        load?.stop();
        rogue?.stop();
        rogueDecoding?.stop();
        await running.shutdown();
        restorePerPublish();
        await disposeQuietly(pki.certificateManager);
        await disposeQuietly(pki.userCertificateManager);
        log.info("simulator stopped");
      })();
      return stopping;
    },
  };
}

/** A port in use or not allowed is the user's to fix: say so without a stack trace. */
function listenError(err: unknown, host: string, port: number): unknown {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === "EADDRINUSE") return new KerfError("USAGE", `cannot listen on ${host}:${port}: the port is in use; choose another with --port`, { cause: err });
  if (code === "EACCES") return new KerfError("USAGE", `cannot listen on ${host}:${port}: not allowed (ports below 1024 need privileges)`, { cause: err });
  if (code === "EADDRNOTAVAIL") return new KerfError("USAGE", `cannot listen on ${host}:${port}: no such address on this machine; check --host`, { cause: err });
  return err;
}

/** Constant-time check of a username and password against the configured list. */
function userCheck(users: readonly { username: string; password: string }[]) {
  const digest = (s: string) => createHash("sha256").update(s, "utf8").digest();
  const known = users.map((u) => ({ user: digest(u.username), pass: digest(u.password) }));
  return (username: string, password: string): boolean => {
    const user = digest(username);
    const pass = digest(password);
    let ok = false;
    for (const k of known) {
      // evaluate both comparisons every time so timing does not reveal which one failed
      const userOk = timingSafeEqual(k.user, user);
      const passOk = timingSafeEqual(k.pass, pass);
      ok = ok || (userOk && passOk);
    }
    return ok;
  };
}
