import { EventEmitter } from "node:events";
import { keyOperationsFromPrivateKey, makePrivateKeyFromPem } from "node-opcua-crypto";
import {
  AttributeIds,
  MessageSecurityMode,
  OPCUAClient,
  SecurityPolicy,
  UserTokenType,
  type ClientSession,
  type UserIdentityInfo,
} from "node-opcua-client";
import type { Logger } from "../../log.ts";
import type { Item, MessageSink } from "../../message.ts";
import { backoff } from "../../backoff.ts";
import { withTimeout } from "../../timeout.ts";
import { KerfError, type KerfErrorCode } from "../../errors.ts";
import { connectErrorCode, describeConnectFailure, isCertificateFailure } from "../trust/explain.ts";
import { endpointContext, firstLine, securityRefusal } from "./connect-errors.ts";
import { trustOnFirstUse } from "../trust/tofu.ts";
import { getEndpoints } from "../trust/probe.ts";
import { credentialsBackoffMs, credentialsRejection, readPasswordFile, watchSecretFile } from "./credentials.ts";
import { clientTransportLimits } from "./limits.ts";
import { deepenPublishPipeline } from "./publish-pipeline.ts";
import { repairUndecodableResponses, type UndecodableReport } from "./undecodable.ts";
import { checkUserCertificateKey, DEPRECATED, selectBest } from "./security.ts";
import { checkChannel } from "./channel.ts";
import { reconcileTrust, type ConnectorPki } from "../trust/pki.ts";
import { RENEWAL_RETRY_MS, type AppCertificate } from "../trust/app-cert.ts";
import { stateDirOf } from "../trust/store.ts";
import { keyPairOf, trialChannel } from "./cert-trial.ts";
import type { SequenceCounters } from "./sequence.ts";
import { keepAliveCount, SubscriptionSet } from "../subscription/subscriptions.ts";
import type { EndpointSpec, GroupSpec, SecurityModeName, SecurityPolicyName, SessionState, UserSpec } from "../types.ts";

export interface MachineSessionOptions {
  spec: EndpointSpec;
  pki: ConnectorPki;
  sink: MessageSink;
  logger: Logger;
  backoff?: { initialMs: number; maxMs: number };
  /** What was delivered per key before this process started (the buffer keeps it across restarts). */
  lastDelivered?: Map<string, Item>;
  /** After the server refused a staged (renewed) application certificate, how long until it is tried again; default RENEWAL_RETRY_MS. */
  renewalRetryMs?: number;
}

/** How long a stopping session waits for node-opcua to close the session, and then the channel. */
const STOP_CLOSE_MS = 1_500;

/** Thrown into the loop's awaits when stop() is called; nothing else sees it. */
class Stopping extends Error {}

export interface SessionHealth {
  state: SessionState;
  since: number;
  lastDataAt: number | null;
  /** The security of the last connection (with mode "best", what was chosen), null before the first. */
  security: { mode: string; policy: string } | null;
  /** Monitored items of the current or last connection. */
  items: number;
  lastError: string | null;
  /** The code of lastError, for health and remote management to match on. */
  lastErrorCode: KerfErrorCode | null;
  connects: number;
  /** Notification messages since start: dropped as duplicates, fetched again, or lost in transit. */
  notifications: SequenceCounters;
  /** The last attempt failed because the server refused the user credentials (see lastError); retried after minutes, or when the password file changes. */
  credentialsRejected: boolean;
  /**
   * Per group: values the server sent that node-opcua cannot decode (sent on as null with
   * BadEncodingLimitsExceeded or BadDecodingError), and notification messages lost whole because
   * they could not be repaired (see undecodable.ts).
   */
  undecodable: Record<string, { values: number; messages: number }>;
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
  #pki: ConnectorPki;
  #sink: MessageSink;
  #log: Logger;
  #backoff: { initialMs: number; maxMs: number };
  #state: SessionState = "disconnected";
  #since = Date.now();
  #stopping = false;
  #stopRequested: Promise<never>;
  #requestStop!: () => void;
  #wake: (() => void) | null = null;
  #loop: Promise<void> | null = null;
  #client: OPCUAClient | null = null;
  #session: ClientSession | null = null;
  #subscriptions: SubscriptionSet | null = null;
  #security: SessionHealth["security"] = null;
  #lastError: string | null = null;
  #lastErrorCode: KerfErrorCode | null = null;
  #lastDataAt: number | null = null;
  #connects = 0;
  #online = false;
  #lastDelivered: Map<string, Item>;
  readonly #sequence: SequenceCounters = { duplicates: 0, recovered: 0, lost: 0 };
  #lastStatus = "";
  readonly #undecodable = new Map<string, { values: number; messages: number }>();
  /** When each data point's undecodable value was last logged. */
  readonly #undecodableLogged = new Map<string, number>();
  #credentialsRejected = false;
  readonly #renewalRetryMs: number;
  /** The application certificate of the attempt under way, or of the live session. */
  #cert: AppCertificate | null = null;
  /** The live session ends to move onto the renewed certificate: reconnect at once, no backoff. */
  #switching = false;

  constructor(options: MachineSessionOptions) {
    super();
    this.#spec = options.spec;
    this.machine = options.spec.machine;
    this.#pki = options.pki;
    this.#sink = options.sink;
    this.#log = options.logger.child({ machine: options.spec.machine });
    this.#backoff = options.backoff ?? { initialMs: 500, maxMs: 30_000 };
    this.#lastDelivered = options.lastDelivered ?? new Map();
    this.#renewalRetryMs = options.renewalRetryMs ?? RENEWAL_RETRY_MS;
    this.#stopRequested = new Promise<never>((_, reject) => (this.#requestStop = () => reject(new Stopping("connector stopping"))));
    this.#stopRequested.catch(() => undefined);
  }

  get state(): SessionState {
    return this.#state;
  }

  health(): SessionHealth {
    return {
      state: this.#state,
      since: this.#since,
      lastDataAt: this.#lastDataAt,
      security: this.#security,
      items: this.#subscriptions?.itemCount ?? 0,
      lastError: this.#lastError,
      lastErrorCode: this.#lastErrorCode,
      connects: this.#connects,
      notifications: { ...this.#sequence },
      credentialsRejected: this.#credentialsRejected,
      undecodable: Object.fromEntries([...this.#undecodable].map(([group, n]) => [group, { ...n }])),
    };
  }

  /**
   * A changed mapping, applied as a diff on the live session: only the affected monitored items
   * change and the others keep flowing. Offline, it simply takes effect on the next connect.
   */
  async applyMapping(groups: GroupSpec[]): Promise<{ added: string[]; removed: string[]; changed: string[] } | null> {
    this.#spec = { ...this.#spec, groups };
    const subscriptions = this.#subscriptions;
    if (!subscriptions || this.#state !== "connected") return null;
    try {
      return await subscriptions.apply(groups);
    } catch (err) {
      // Partly applied is not a state to keep: a fresh connect subscribes to exactly the new mapping.
      this.#settle?.(`the new mapping could not be applied in place (${(err as Error).message}); resubscribing`);
      return null;
    }
  }

  /**
   * Runs `fn` (a remote command's read, write, call or browse) on the live session: commands use
   * the session this owner keeps, never a second one. Null when not connected (the caller answers
   * "busy"); the call is bounded by the connect timeout.
   */
  async operate<T>(fn: (session: ClientSession, namespaceArray: readonly string[]) => Promise<T>): Promise<T | null> {
    const session = this.#session;
    if (!session || this.#state !== "connected") return null;
    return withTimeout(fn(session, this.#namespaceArray), this.#spec.connectTimeoutMs, "remote command", endpointContext(this.#spec));
  }

  start(): void {
    if (this.#loop) return;
    this.#pki.own.register(this.machine);
    this.#loop = this.#run();
  }

  /**
   * Ends the session promptly in any state: a connect attempt, a subscribe or a backoff sleep
   * under way is abandoned at once, and closing the session and the channel is bounded
   * (STOP_CLOSE_MS each), since node-opcua's connect, close and disconnect can hang on a server
   * that has gone silent.
   */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#requestStop();
    this.#wake?.();
    await this.#loop;
    this.#pki.own.unregister(this.machine);
    this.#setState("stopped");
  }

  /** `promise`, or the Stopping error as soon as stop() is called. */
  #untilStop<T>(promise: Promise<T>): Promise<T> {
    return Promise.race([promise, this.#stopRequested]);
  }

  async #run(): Promise<void> {
    let attempt = 0;
    /** Refused credentials in a row: each doubles the wait before the next attempt. */
    let refusals = 0;
    while (!this.#stopping) {
      this.#setState(this.#connects === 0 ? "connecting" : "reconnecting");
      let reason: string;
      let fallback = false;
      const connecting = this.#connect();
      try {
        const { lost } = await this.#untilStop(connecting);
        attempt = 0;
        refusals = 0;
        this.#credentialsRejected = false;
        this.#connects++;
        this.#setState("connected");
        // a new session with every item subscribed (not a repaired channel)
        this.emit("subscribed");
        this.#reportStatus("online");
        reason = await this.#untilStop(lost);
      } catch (err) {
        if (this.#stopping) {
          reason = "connector stopping";
          // An abandoned attempt may still make a client or session after the teardown below.
          connecting.then(
            () => this.#teardown(),
            () => this.#teardown(),
          );
        } else if (this.#cert?.staged && isCertificateFailure(err)) {
          // The machine does not trust the renewed certificate yet: back to the current one at once.
          fallback = true;
          reason = this.#refusedRenewal(this.#cert, firstLine(err instanceof Error ? err.message : String(err)));
        } else {
          // node-opcua reports a transport-limit abort only as "Connection Break"; the real reason was kept.
          reason = this.#abortReason ?? (await describeConnectFailure(err, this.#spec, this.#pki));
          this.#lastError = reason;
          this.#lastErrorCode = connectErrorCode(err);
          const refused = credentialsRejection(err);
          this.#credentialsRejected = refused !== null;
          if (refused) refusals++;
          else this.#log.error({ event: "opcua_connect_failed", endpoint: this.#spec.endpointUrl, attempt, code: this.#lastErrorCode }, reason);
        }
      }
      await this.#teardown();
      if (this.#stopping) break;
      if (fallback) continue;
      this.#reportStatus("offline", reason);
      if (this.#switching) {
        this.#switching = false;
        continue;
      }
      if (this.#credentialsRejected) {
        await this.#waitAfterRefusal(refusals, reason);
        continue;
      }
      const delay = backoff(++attempt, { initialDelayMs: this.#backoff.initialMs, maxDelayMs: this.#backoff.maxMs });
      this.#log.info({ event: "opcua_reconnecting", delayMs: Math.round(delay) }, "reconnecting after backoff");
      await this.#untilStop(this.#sleep(delay)).catch(() => undefined);
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
    this.#abortReason = undefined;
    // set once chosen below: a failure before that is not about our certificate
    this.#cert = null;
    this.#switching = false;
    checkUserCertificateKey(spec.user);
    await reconcileTrust(this.#pki.certificateManager);
    const { mode, policy } = spec.securityMode === "best" ? await this.#pickBest() : { mode: spec.securityMode, policy: spec.securityPolicy };
    this.#security = { mode, policy };
    if (spec.trustOnFirstUse) await trustOnFirstUse(this.#pki, spec, this.#log);
    this.#assertRunning();
    const cert = this.#pki.own.choose(this.machine, Date.now(), this.#renewalRetryMs);
    this.#cert = cert;
    // With None the certificate secures nothing and servers do not check it.
    if (mode !== "None" && cert.info.notAfter.getTime() <= Date.now()) throw this.#expired(cert);
    if (DEPRECATED.has(policy)) {
      this.#log.warn({ policy }, `connecting with the deprecated security policy ${policy} (allowDeprecated is set for this machine)`);
    }
    const client = OPCUAClient.create({
      // bounded chunks and messages, whatever the server's Acknowledge says
      ...clientTransportLimits((reason) => {
        this.#abortReason = `${spec.machine} (${spec.endpointUrl}): the server sent more than Kerf accepts; connection closed: ${reason}`;
        this.#log.error({ endpoint: spec.endpointUrl }, this.#abortReason);
      }),
      applicationName: "Kerf",
      applicationUri: this.#pki.applicationUri,
      clientName: `kerf-${spec.machine}`,
      clientCertificateManager: this.#pki.certificateManager,
      certificateKeyPairProvider: keyPairOf(cert),
      securityMode: MessageSecurityMode[mode],
      securityPolicy: SecurityPolicy[policy],
      // The endpoint URL the server advertises often differs from the one we dial (NAT, port
      // forwarding, DNS names), so it is not matched; the mode and policy are, exactly, after
      // connecting (checkNoDowngrade below).
      endpointMustExist: false,
      // maxRetry > 0 lets node-opcua repair a broken channel: it reactivates the session on a new
      // channel and republishes what the server still queues, which we could only redo worse.
      // It retries for ever once repairing, so #watchRepair bounds it and then takes over.
      connectionStrategy: { maxRetry: 1, initialDelay: 500, maxDelay: 5000, randomisationFactor: 0.5 },
      keepSessionAlive: true,
      requestedSessionTimeout: spec.sessionTimeoutMs,
      transportTimeout: spec.connectTimeoutMs,
    });
    repairUndecodableResponses(client, (report) => this.#onUndecodable(report));
    this.#client = client;
    let settle!: (reason: string) => void;
    const lost = new Promise<string>((resolve) => (settle = resolve));
    this.#settle = settle;
    client.on("close", (err?: Error | null) => settle(err ? `connection closed: ${err.message}` : "connection closed"));
    this.#wake = () => settle("connector stopping");

    await withTimeout(client.connect(spec.endpointUrl), spec.connectTimeoutMs, "connect", endpointContext(spec));
    this.#assertRunning();
    // What the secure channel really negotiated, and the server's description of that endpoint.
    const { refusal } = await checkChannel(client, spec, mode, policy, this.#pki.certificateManager, this.#log);
    if (refusal) throw securityRefusal(spec, refusal);
    const session = await withTimeout(client.createSession(userIdentity(this.#user())), spec.connectTimeoutMs, "create session", endpointContext(spec));
    this.#session = session;
    this.#assertRunning();
    this.#pki.own.established(this.machine, cert);
    const sessionId = session.sessionId.toString();
    session.on("session_closed", () => settle("session closed by the server"));
    session.on("keepalive_failure", () => settle("session keep-alive failed"));
    this.#watchRepair(client, session, sessionId, settle);

    const namespaceArray = await session.readNamespaceArray();
    this.#namespaceArray = namespaceArray;
    const maxPerCall = await readMaxMonitoredItemsPerCall(session);
    // After node-opcua had to make a new session (the server restarted), it recreates our monitored
    // items with their old numeric node ids, which may now name other nodes; nothing from them may
    // pass until we have resubscribed with freshly resolved ids.
    const sink: MessageSink = {
      write: (messages) => {
        if (session.sessionId.toString() === sessionId) this.#sink.write(messages);
        else settle("the server lost the session (restarted?); resubscribing with freshly resolved node ids");
      },
    };
    this.#subscriptions = new SubscriptionSet({
      session,
      machine: spec.machine,
      groups: spec.groups,
      namespaceArray,
      maxItemsPerCall: maxPerCall,
      sink,
      logger: this.#log,
      onData: () => (this.#lastDataAt = Date.now()),
      onGroupData: (group) => {
        this.#onGroupData(group);
        // once per flush and group: what watches a machine's groups across reconnects listens here
        this.emit("groupData", group);
      },
      onFailure: (reason) => settle(reason),
      lastDelivered: this.#lastDelivered,
      sequence: this.#sequence,
    });
    // before subscribing: the first values of a large mapping are the largest backlog
    this.#stopPipeline = deepenPublishPipeline(client, session);
    await this.#subscriptions.create();
    this.#watchPublishing(client, settle);
    this.#watchRenewal(client, settle, mode, policy);
    this.#lastError = null;
    this.#lastErrorCode = null;
    this.#selected = { mode, policy };
    this.#log.info({ event: "opcua_connected", endpoint: spec.endpointUrl, securityMode: mode, securityPolicy: policy, items: this.#subscriptions.itemCount }, "connected and subscribed");
    if (this.#stopping) settle("connector stopping");
    return { lost };
  }

  /** The security actually in use, once connected (what `mode: best` chose). */
  get security(): { mode: SecurityModeName; policy: SecurityPolicyName } | null {
    return this.#selected;
  }
  #selected: { mode: SecurityModeName; policy: SecurityPolicyName } | null = null;

  async #pickBest(): Promise<{ mode: SecurityModeName; policy: SecurityPolicyName }> {
    const spec = this.#spec;
    const endpoints = await getEndpoints(spec.endpointUrl, this.#pki, spec.connectTimeoutMs);
    const best = selectBest(endpoints, spec.allowDeprecated);
    if (!best) throw new KerfError("OPCUA_SECURITY", `mode best: the server offers no endpoint Kerf may use${spec.allowDeprecated ? "" : " (deprecated policies need allowDeprecated: true)"}`, { context: endpointContext(spec) });
    this.#log.info(best, "mode best: picked the strongest endpoint the server offers");
    return best;
  }

  /**
   * node-opcua repairs a broken channel on its own; we leave it alone while it does, but only for
   * as long as the server would keep our session. Past that, repairing can only end in a new
   * session, which we make ourselves (with node ids resolved again), so we take over.
   */
  #watchRepair(client: OPCUAClient, session: ClientSession, sessionId: string, settle: (reason: string) => void): void {
    let deadline: NodeJS.Timeout | undefined;
    client.on("connection_lost", () => {
      this.#setState("reconnecting");
      this.#reportStatus("offline", "connection to the server lost");
      this.#log.warn({ event: "opcua_connection_lost" }, "connection lost; node-opcua is repairing the channel (session reactivation, republish)");
      clearTimeout(deadline);
      deadline = setTimeout(() => settle("the channel was not repaired in time"), Math.min(this.#spec.sessionTimeoutMs, 30_000));
    });
    client.on("connection_reestablished", () => {
      clearTimeout(deadline);
      if (session.sessionId.toString() !== sessionId) {
        settle("the server lost the session (restarted?); resubscribing with freshly resolved node ids");
        return;
      }
      this.#setState("connected");
      this.#reportStatus("online");
      this.#log.info({ event: "opcua_channel_repaired" }, "channel repaired; session and subscriptions kept");
    });
    client.once("close", () => clearTimeout(deadline));
  }

  /**
   * Two watchdogs. A server that stops answering publish requests for 3 keep-alive periods is
   * treated as gone; and a group with `watchdogSeconds` that has had no data for that long
   * means the server is stuck even though it answers, which a new session often cures.
   */
  #watchPublishing(client: OPCUAClient, settle: (reason: string) => void): void {
    let lastPublish = Date.now();
    const lastData = new Map<string, number>();
    this.#onGroupData = (group) => lastData.set(group, Date.now());
    const onResponse = (response: { schema?: { name?: string } }) => {
      if (response?.schema?.name === "PublishResponse") lastPublish = Date.now();
    };
    client.on("receive_response", onResponse);
    const timer = setInterval(() => {
      const now = Date.now();
      if (this.#state !== "connected") {
        lastPublish = now;
        lastData.clear();
        return;
      }
      const groups = this.#spec.groups;
      const keepAliveMs = Math.max(...groups.map((g) => g.publishingInterval * keepAliveCount(g.publishingInterval)), 1000);
      if (now - lastPublish > 3 * keepAliveMs) {
        settle(`no publish response for ${Math.round((now - lastPublish) / 1000)} s (3 keep-alive periods)`);
        return;
      }
      for (const g of groups) {
        if (!g.watchdogSeconds) continue;
        if (!lastData.has(g.name)) lastData.set(g.name, now);
        if (now - lastData.get(g.name)! > g.watchdogSeconds * 1000) {
          settle(`group '${g.name}' had no data for ${g.watchdogSeconds} s (its watchdog)`);
          return;
        }
      }
    }, 1000);
    timer.unref();
    client.once("close", () => clearInterval(timer));
    this.#stopWatch = () => clearInterval(timer);
  }

  /** Counts and logs what undecodable.ts repaired or could not: per group, by data point, each point at most every 10 min. */
  #onUndecodable(report: UndecodableReport): void {
    if (report.service !== "PublishResponse" && report.service !== "RepublishResponse") {
      this.#log.warn({ service: report.service }, "the server sent a response that cannot be decoded; its request fails now rather than at its timeout");
      return;
    }
    const subscriptions = this.#subscriptions;
    const groups = report.subscriptionId === undefined ? [] : (subscriptions?.groupsOf(report.subscriptionId) ?? []);
    const group = groups.join(",") || "?";
    const counts = this.#undecodable.get(group) ?? { values: 0, messages: 0 };
    this.#undecodable.set(group, counts);
    if (!report.repaired) {
      counts.messages++;
      this.#log.error(
        { group, subscriptionId: report.subscriptionId, sequenceNumber: report.sequenceNumber },
        "a notification message from the server cannot be decoded, nor repaired value by value: its values are lost",
      );
      return;
    }
    const now = Date.now();
    for (const value of report.values) {
      counts.values++;
      const where = subscriptions?.pointOf(value.handle);
      const point = where?.point ?? `handle ${value.handle}`;
      const last = this.#undecodableLogged.get(point);
      if (last !== undefined && now - last < 10 * 60_000) continue;
      this.#undecodableLogged.set(point, now);
      this.#log.warn(
        { point, group: where?.group ?? group, status: value.status.name, reason: value.reason.slice(0, 200) },
        `a value of '${point}' cannot be decoded; it is sent as null with ${value.status.name}, and the other values of its message go on (logged at most every 10 min)`,
      );
    }
    if (report.droppedNotifications > 0) this.#log.warn({ group, notifications: report.droppedNotifications }, "event notifications that cannot be decoded were left out of a message");
  }

  /**
   * While the live session runs on the current certificate and a renewal is staged, a trial
   * channel with the renewed one (beside the session, see cert-trial.ts) every renewalRetryMs;
   * once the server accepts it, the session ends and reconnects at once with it. Until then
   * nothing interrupts the values.
   */
  #watchRenewal(client: OPCUAClient, settle: (reason: string) => void, mode: SecurityModeName, policy: SecurityPolicyName): void {
    let trying = false;
    const timer = setInterval(() => {
      if (trying || this.#state !== "connected" || this.#cert?.staged) return;
      const staged = this.#pki.own.trialDue(this.machine, Date.now(), this.#renewalRetryMs);
      if (!staged) return;
      trying = true;
      void trialChannel(this.#spec, mode, policy, this.#pki, staged)
        .then(({ result, reason }) => {
          if (this.#stopping || this.#client !== client) return;
          if (result === "refused") this.#refusedRenewal(staged, reason ?? "refused");
          else if (result === "failed") this.#log.info({ thumbprint: staged.info.thumbprint, reason }, "could not try the renewed OPC UA application certificate on this machine; trying again later");
          else {
            this.#switching = true;
            this.#log.info({ thumbprint: staged.info.thumbprint }, "the machine accepts the renewed OPC UA application certificate; reconnecting with it");
            settle(`switching to the renewed OPC UA application certificate (thumbprint ${staged.info.thumbprint})`);
          }
        })
        .finally(() => (trying = false));
    }, Math.min(this.#renewalRetryMs, 30_000));
    timer.unref();
    client.once("close", () => clearInterval(timer));
    this.#stopRenewalWatch = () => clearInterval(timer);
  }

  /** Records a refusal of the renewed certificate and says what to do; the reason for the loop. */
  #refusedRenewal(cert: AppCertificate, why: string): string {
    // WARN the first time, then INFO at each retry: the operator has been told
    const first = this.#pki.own.refused(this.machine, cert);
    const minutes = Math.max(1, Math.round(this.#renewalRetryMs / 60_000));
    this.#log[first ? "warn" : "info"](
      { endpoint: this.#spec.endpointUrl, thumbprint: cert.info.thumbprint, file: cert.certificateFile, reason: why },
      `${this.machine} does not accept the renewed OPC UA application certificate yet; the connector goes on with the current one and tries the renewed one again in ${minutes} min. Trust thumbprint ${cert.info.thumbprint} on the machine (file ${cert.certificateFile})`,
    );
    return `the renewed application certificate was refused (${why}); connecting with the current one`;
  }

  /** The clear error for an expired application certificate, with the way back. */
  #expired(cert: AppCertificate): KerfError {
    const staged = this.#pki.own.staged();
    const fix = staged
      ? `a renewed certificate is staged: trust thumbprint ${staged.info.thumbprint} (file ${staged.certificateFile}) on the machine; the connector tries it again within ${Math.max(1, Math.round(this.#renewalRetryMs / 60_000))} min`
      : `make a new one with: kerf pki renew --state-dir ${stateDirOf(this.#pki.certificateManager.rootDir)}, then trust the thumbprint it prints on the machine`;
    return new KerfError(
      "OPCUA_OWN_CERT_EXPIRED",
      `${this.machine} (${this.#spec.endpointUrl}): the connector's OPC UA application certificate ${cert.certificateFile} (thumbprint ${cert.info.thumbprint}) expired on ${cert.info.notAfter.toISOString()}, and machines refuse an expired certificate; ${fix}`,
      { context: endpointContext(this.#spec) },
    );
  }

  #onGroupData: (group: string) => void = () => undefined;
  #stopRenewalWatch: () => void = () => undefined;
  #stopWatch: () => void = () => undefined;
  /** Ends this connection's publish-pipeline watch (its timer and listener hold the client). */
  #stopPipeline: () => void = () => undefined;
  #settle: ((reason: string) => void) | null = null;
  #namespaceArray: readonly string[] = [];
  #abortReason: string | undefined;

  async #teardown(): Promise<void> {
    this.#stopWatch();
    this.#stopRenewalWatch();
    this.#stopPipeline();
    this.#stopPipeline = () => undefined;
    const client = this.#client;
    const session = this.#session;
    this.#subscriptions?.close();
    this.#client = null;
    this.#session = null;
    this.#subscriptions = null;
    const ms = this.#stopping ? STOP_CLOSE_MS : 2_000;
    if (session) await withTimeout(session.close(true), ms, "close session").catch(() => undefined);
    if (client) await withTimeout(client.disconnect(), ms, "disconnect").catch(() => undefined);
  }

  /** An attempt that stop() has abandoned goes no further (the loop tears down what it made). */
  #assertRunning(): void {
    if (this.#stopping) throw new Stopping("connector stopping");
  }

  /**
   * Refused credentials are not retried every few seconds: machines lock an account after a few
   * failed logins. The wait grows from 1 to 30 minutes; a change of the password file ends it.
   */
  async #waitAfterRefusal(refusals: number, reason: string): Promise<void> {
    const delay = credentialsBackoffMs(refusals);
    const user = this.#spec.user;
    const file = user.type === "username" ? user.passwordFile : undefined;
    this.#log.error(
      { endpoint: this.#spec.endpointUrl, refusals, retryInMs: delay, ...(file ? { passwordFile: file } : {}) },
      `${reason}. The server refused ${this.machine}'s credentials; the next attempt is in ${Math.round(delay / 60_000)} min (machines lock accounts after failed logins)${file ? `, or at once when ${file} changes` : ""}`,
    );
    const unwatch = file
      ? watchSecretFile(file, () => {
          this.#log.info({ passwordFile: file }, "the password file changed; connecting again now");
          this.#wake?.();
        })
      : undefined;
    try {
      await this.#sleep(delay);
    } finally {
      unwatch?.();
    }
  }

  /** The user to log in as. A password file is read again at each attempt, so a corrected one counts without a restart. */
  #user(): UserSpec {
    const user = this.#spec.user;
    if (user.type !== "username" || !user.passwordFile) return user;
    const password = readPasswordFile(user.passwordFile);
    if (password === null) {
      this.#log.warn({ passwordFile: user.passwordFile }, "cannot read the password file, or it is empty; using the password read before");
      return user;
    }
    if (password === user.password) return user;
    const updated: UserSpec = { ...user, password };
    this.#spec = { ...this.#spec, user: updated };
    return updated;
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

function userIdentity(user: UserSpec): UserIdentityInfo {
  switch (user.type) {
    case "anonymous":
      return { type: UserTokenType.Anonymous };
    case "username":
      return { type: UserTokenType.UserName, userName: user.username, password: user.password };
    case "certificate":
      return {
        type: UserTokenType.Certificate,
        certificateData: pemToDer(user.certificatePem),
        keyOperations: keyOperationsFromPrivateKey(makePrivateKeyFromPem(user.privateKeyPem)),
      };
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
