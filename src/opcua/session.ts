import { EventEmitter } from "node:events";
import {
  AttributeIds,
  MessageSecurityMode,
  OPCUAClient,
  SecurityPolicy,
  UserTokenType,
  type ClientSession,
  type UserIdentityInfo,
} from "node-opcua-client";
import type { Logger } from "../log.ts";
import type { MessageSink } from "../types.ts";
import { backoff } from "../backoff.ts";
import { describeConnectError } from "./connect-errors.ts";
import type { ClientPki } from "./pki.ts";
import { SubscriptionSet } from "./subscriptions.ts";
import type { EndpointSpec, SessionState } from "./types.ts";

export interface MachineSessionOptions {
  spec: EndpointSpec;
  pki: ClientPki;
  sink: MessageSink;
  logger: Logger;
  backoff?: { initialMs: number; maxMs: number };
}

export interface SessionHealth {
  state: SessionState;
  since: number;
  lastDataAt: number | null;
  lastError: string | null;
  connects: number;
}

/**
 * The one owner of a machine endpoint's OPC UA session. It runs a serial loop
 * (Disconnected → Connecting → Connected → Reconnecting → …); every failure only
 * ends the current connection and lets the loop reconnect with capped, jittered
 * backoff. node-opcua's own reconnection is switched off (maxRetry 0): two
 * reconnection loops race each other and flood the server with sessions.
 */
export class MachineSession extends EventEmitter {
  readonly machine: string;
  #spec: EndpointSpec;
  #pki: ClientPki;
  #sink: MessageSink;
  #log: Logger;
  #backoff: { initialMs: number; maxMs: number };
  #state: SessionState = "disconnected";
  #since = Date.now();
  #stopping = false;
  #wake: (() => void) | null = null;
  #loop: Promise<void> | null = null;
  #client: OPCUAClient | null = null;
  #session: ClientSession | null = null;
  #subscriptions: SubscriptionSet | null = null;
  #lastError: string | null = null;
  #lastDataAt: number | null = null;
  #connects = 0;
  #online = false;
  #lastDelivered = new Map<string, string>();
  #lastStatus = "";

  constructor(options: MachineSessionOptions) {
    super();
    this.#spec = options.spec;
    this.machine = options.spec.machine;
    this.#pki = options.pki;
    this.#sink = options.sink;
    this.#log = options.logger.child({ machine: options.spec.machine });
    this.#backoff = options.backoff ?? { initialMs: 500, maxMs: 30_000 };
  }

  get state(): SessionState {
    return this.#state;
  }

  health(): SessionHealth {
    return { state: this.#state, since: this.#since, lastDataAt: this.#lastDataAt, lastError: this.#lastError, connects: this.#connects };
  }

  start(): void {
    if (this.#loop) return;
    this.#loop = this.#run();
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    this.#wake?.();
    await this.#loop;
    this.#setState("stopped");
  }

  async #run(): Promise<void> {
    let attempt = 0;
    while (!this.#stopping) {
      this.#setState(this.#connects === 0 ? "connecting" : "reconnecting");
      let reason: string;
      try {
        const { lost } = await this.#connect();
        attempt = 0;
        this.#connects++;
        this.#setState("connected");
        this.#reportStatus("online");
        reason = await lost;
      } catch (err) {
        reason = describeConnectError(err, this.#spec);
        this.#lastError = reason;
        this.#log.error({ endpoint: this.#spec.endpointUrl, attempt }, reason);
      }
      await this.#teardown();
      if (this.#stopping) break;
      this.#reportStatus("offline", reason);
      const delay = backoff(++attempt, { initialDelayMs: this.#backoff.initialMs, maxDelayMs: this.#backoff.maxMs });
      this.#log.info({ delayMs: Math.round(delay) }, "reconnecting after backoff");
      await this.#sleep(delay);
    }
    await this.#teardown();
    if (this.#online) this.#reportStatus("offline", "connector stopping");
  }

  /**
   * Connects and subscribes. `lost` settles with the reason the connection ended; it is
   * wrapped in an object because an async function would otherwise wait for it.
   */
  async #connect(): Promise<{ lost: Promise<string> }> {
    const spec = this.#spec;
    const client = OPCUAClient.create({
      applicationName: "Kerf",
      applicationUri: this.#pki.applicationUri,
      clientName: `kerf-${spec.machine}`,
      clientCertificateManager: this.#pki.certificateManager,
      certificateFile: this.#pki.certificateFile,
      privateKeyFile: this.#pki.privateKeyFile,
      securityMode: MessageSecurityMode[spec.securityMode],
      securityPolicy: SecurityPolicy[spec.securityPolicy],
      // The configured mode and policy must exist on the server exactly; never a weaker fallback.
      endpointMustExist: true,
      connectionStrategy: { maxRetry: 0, initialDelay: 100, maxDelay: 1000 },
      keepSessionAlive: true,
      requestedSessionTimeout: spec.sessionTimeoutMs,
      transportTimeout: spec.connectTimeoutMs,
    });
    this.#client = client;
    let settle!: (reason: string) => void;
    const lost = new Promise<string>((resolve) => (settle = resolve));
    client.on("connection_lost", () => settle("connection to the server lost"));
    client.on("close", (err?: Error | null) => settle(err ? `connection closed: ${err.message}` : "connection closed"));
    this.#wake = () => settle("connector stopping");

    await withTimeout(client.connect(spec.endpointUrl), spec.connectTimeoutMs, "connect");
    const session = await withTimeout(client.createSession(userIdentity(spec)), spec.connectTimeoutMs, "create session");
    this.#session = session;
    session.on("session_closed", () => settle("session closed by the server"));
    session.on("keepalive_failure", () => settle("session keep-alive failed"));

    const namespaceArray = await session.readNamespaceArray();
    const maxPerCall = await readMaxMonitoredItemsPerCall(session);
    this.#subscriptions = new SubscriptionSet({
      session,
      machine: spec.machine,
      groups: spec.groups,
      namespaceArray,
      maxItemsPerCall: maxPerCall,
      sink: this.#sink,
      logger: this.#log,
      onData: () => (this.#lastDataAt = Date.now()),
      onFailure: (reason) => settle(reason),
      lastDelivered: this.#lastDelivered,
    });
    await this.#subscriptions.create();
    this.#lastError = null;
    this.#log.info(
      { endpoint: spec.endpointUrl, securityMode: spec.securityMode, securityPolicy: spec.securityPolicy, items: this.#subscriptions.itemCount },
      "connected and subscribed",
    );
    if (this.#stopping) settle("connector stopping");
    return { lost };
  }

  async #teardown(): Promise<void> {
    const client = this.#client;
    const session = this.#session;
    this.#client = null;
    this.#session = null;
    this.#subscriptions = null;
    if (session) await withTimeout(session.close(true), 2_000, "close session").catch(() => undefined);
    if (client) await withTimeout(client.disconnect(), 2_000, "disconnect").catch(() => undefined);
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  #setState(state: SessionState): void {
    if (state === this.#state) return;
    this.#state = state;
    this.#since = Date.now();
    this.emit("state", state);
  }

  #reportStatus(state: "online" | "offline", reason?: string): void {
    const key = `${state}:${reason ?? ""}`;
    // Retrying for the same reason is not news for the cloud; a change of state or reason is.
    if (key === this.#lastStatus) return;
    this.#lastStatus = key;
    this.#online = state === "online";
    this.#sink.write([{ kind: "status", machine: this.machine, state, ...(reason ? { reason } : {}), t: new Date().toISOString() }]);
  }
}

function userIdentity(spec: EndpointSpec): UserIdentityInfo {
  const user = spec.user;
  switch (user.type) {
    case "anonymous":
      return { type: UserTokenType.Anonymous };
    case "username":
      return { type: UserTokenType.UserName, userName: user.username, password: user.password };
    case "certificate":
      return {
        type: UserTokenType.Certificate,
        certificateData: pemToDer(user.certificatePem),
        privateKey: user.privateKeyPem,
      } as UserIdentityInfo;
  }
}

function pemToDer(pem: string): Buffer {
  const body = pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, "").replace(/\s+/g, "");
  return Buffer.from(body, "base64");
}

async function readMaxMonitoredItemsPerCall(session: ClientSession): Promise<number> {
  // Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall; 0 or missing means "no limit stated".
  const dv = await session.read({ nodeId: "ns=0;i=11714", attributeId: AttributeIds.Value }).catch(() => null);
  const n = Number(dv?.value?.value ?? 0);
  return Number.isInteger(n) && n > 0 ? n : 0;
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
