import { readFileSync } from "node:fs";
import path from "node:path";
import { bootstrapIdentity } from "../certs/enrol.ts";
import { EstClient } from "../certs/est.ts";
import { ensureIdentity, type Enroller, type Identity } from "../certs/identity.ts";
import { loadIdentityFiles, type IdentityFiles } from "../certs/files.ts";
import { CertificateRenewal, type RenewalHealth } from "../certs/renewal.ts";
import type { LoadedConfig } from "../config/load.ts";
import type { Logger } from "../log.ts";
import type { BatchStore } from "../message.ts";
import { KerfError } from "../errors.ts";
import { BacklogProgress } from "../progress.ts";
import { describeProxy, resolveProxy } from "../uplink/proxy.ts";
import { Transport } from "../uplink/transport.ts";
import { Sender, type SenderHealth } from "../uplink/sender.ts";
import { TokenClient, type TokenHealth } from "../uplink/tokens.ts";
import { identityProblems } from "./identity-health.ts";
import { STOP_GRACE_MS, within, type Part, type PartHealth, type Problem, type StopBudget } from "./part.ts";

/** Without an acknowledgement for this many expected intervals while values wait, the uplink makes no progress. */
export const ACK_INTERVALS = 3;
/** A backlog of this many values or more shows its progress while it goes out. */
export const BACKLOG_PROGRESS_MIN = 100_000;

export interface UplinkPartOptions {
  loaded: LoadedConfig;
  stateDir: string;
  logger: Logger;
  enroller?: Enroller | undefined;
  store: BatchStore;
  /** Values waiting in the buffer. */
  backlog: () => number;
  /** The SPKI pins in effect: cloud.pins, or the signed pin set of the update channel (src/update/signed-pins.ts). */
  pins?: readonly string[];
}

export interface UplinkPartHealth extends PartHealth {
  sender: SenderHealth | null;
  /** The access tokens (cloud.auth), or null without them. */
  tokens: TokenHealth | null;
  /** The instance certificate: expiry, renewals and the last renewal error. */
  certificate: RenewalHealth | null;
  /** The instance certificate in service, also without enrolment (identity files): null before the start. */
  identity: { instanceId: string | null; notAfter: string } | null;
}

/**
 * The uplink: the instance identity, the pinned transport and the sender that empties the
 * buffer into the cloud.
 */
export class UplinkPart implements Part<UplinkPartHealth> {
  readonly name = "uplink";
  readonly #o: UplinkPartOptions;
  #transport: Transport | null = null;
  #sender: Sender | null = null;
  #tokens: TokenClient | null = null;
  #identity: IdentityFiles | null = null;
  #renewal: CertificateRenewal | null = null;
  #tls: { caPem: string | undefined; proxy: ReturnType<typeof resolveProxy> } | null = null;
  #startedAt = Date.now();
  /** When the backlog was last seen empty: no acknowledgement is due before values wait. */
  #emptyAt = Date.now();
  #backlogProgress: BacklogProgress | null = null;
  #backlogCheckedAt = 0;

  constructor(options: UplinkPartOptions) {
    this.#o = options;
  }

  get sender(): Sender | null {
    return this.#sender;
  }

  /** The transport, for certificate rotation. */
  get transport(): Transport | null {
    return this.#transport;
  }

  get tokens(): TokenClient | null {
    return this.#tokens;
  }

  /** Renewals of the instance certificate over EST; null without cloud.enrolment. Emits "renewed" (identity). */
  get renewal(): CertificateRenewal | null {
    return this.#renewal;
  }

  /** How long the uplink may go without an acknowledgement while values wait: N × the longest a request or a retry pause may take. */
  get ackLimitMs(): number {
    const { cloud } = this.#o.loaded.config;
    return ACK_INTERVALS * Math.max(cloud.requestTimeoutMs, cloud.retry.maxDelayMs);
  }

  async start(): Promise<void> {
    const { config } = this.#o.loaded;
    const log = this.#o.logger;
    const enrolment = config.cloud.enrolment;
    const caPem = config.cloud.caFile ? readFileSync(config.cloud.caFile, "utf8") : undefined;
    const idLog = log.child({ component: "identity" });
    const proxy = resolveProxy(config.cloud.proxy, this.#o.loaded.secrets.proxy);
    log.info({ component: "uplink", proxy: proxy?.url ?? null, proxySource: proxy?.source ?? null }, describeProxy(proxy));
    this.#tls = { caPem, proxy };
    const pins = this.#o.pins ?? config.cloud.pins;
    const dir = path.join(this.#o.stateDir, "identity");
    let identity: IdentityFiles | Identity;
    if (config.cloud.identity) identity = await loadIdentityFiles(config.cloud.identity.certificateFile, config.cloud.identity.privateKeyFile);
    else if (enrolment && !this.#o.enroller) {
      identity = await bootstrapIdentity({ dir, instance: config.instance, url: enrolment.url, tokenFile: enrolment.tokenFile, keyType: enrolment.keyType, pins, caPem, proxy, logger: idLog });
    } else identity = await ensureIdentity({ dir, instance: config.instance, keyType: enrolment?.keyType, enroller: this.#o.enroller, logger: idLog });
    this.#identity = identity;
    idLog.info({ ...("instanceId" in identity ? { instanceId: identity.instanceId } : {}), notAfter: identity.notAfter.toISOString() }, "instance identity loaded");
    this.#transport = new Transport({
      certPem: identity.certPem,
      keyPem: identity.keyPem,
      caPem,
      pins,
      logger: log.child({ component: "uplink" }),
      // live requests, and as many stuck ones waiting out their deadlines beside them (pacer.ts)
      // (plus the command channel's long poll, which holds one connection open)
      connections: 2 * config.cloud.concurrency + (config.commands ? 1 : 0),
      proxy,
    });
    const auth = config.cloud.auth;
    this.#tokens = auth
      ? new TokenClient({
          issuer: auth.issuer,
          method: auth.method,
          clientId: config.instance,
          scope: auth.scope,
          resource: auth.resource ?? config.cloud.url,
          transport: this.#transport,
          keyPem: identity.keyPem,
          logger: log.child({ component: "tokens" }),
          retry: config.cloud.retry,
        })
      : null;
    if (enrolment && "instanceId" in identity) {
      this.#renewal = new CertificateRenewal(identity, {
        dir,
        instance: config.instance,
        est: new EstClient({ url: enrolment.url, dispatcher: this.#transport, timeoutMs: config.cloud.requestTimeoutMs }),
        transport: this.#transport,
        renewAt: enrolment.renewAt,
        rekey: enrolment.rekey,
        keyType: enrolment.keyType,
        retry: config.cloud.retry,
        logger: idLog,
      });
      this.#renewal.start();
    }
    this.#sender = new Sender({
      tokens: this.#tokens ?? undefined,
      store: this.#o.store,
      // The renewal watches the sender's answers: the first success with a new certificate confirms it.
      transport: this.#renewal ? this.#transport.compose(this.#renewal.interceptor()) : this.#transport,
      url: config.cloud.url,
      instance: config.instance,
      concurrency: config.cloud.concurrency,
      requestTimeoutMs: config.cloud.requestTimeoutMs,
      retry: config.cloud.retry,
      maxItemsPerRequest: config.cloud.batch.maxItems,
      maxBytesPerRequest: config.cloud.batch.maxBytes,
      logger: log.child({ component: "uplink" }),
    });
    this.#startedAt = this.#emptyAt = Date.now();
    this.#sender.on("acked", () => this.#onAcked());
    this.#sender.start();
  }

  /**
   * A transport for the update mirror: the instance certificate in service, the chain checked
   * against cloud.caFile or the system CAs, not the pins (the metadata it fetches is signed).
   */
  mirrorTransport(): Transport {
    const identity = this.#renewal?.identity ?? this.#identity;
    if (!identity || !this.#tls) throw new KerfError("UPLINK_CLOSED", "the uplink has not started");
    const { caPem, proxy } = this.#tls;
    return new Transport({ certPem: identity.certPem, keyPem: identity.keyPem, caPem, pins: [], unpinned: true, logger: this.#o.logger.child({ component: "update-mirror" }), connections: 1, proxy });
  }

  /** A large backlog going out (after an outage): its progress, checked at most once a second. */
  #onAcked(): void {
    const now = Date.now();
    if (now - this.#backlogCheckedAt < 1_000) return;
    this.#backlogCheckedAt = now;
    this.#backlogProgress ??= new BacklogProgress({ label: "uplink: sending the backlog", unit: "values", min: BACKLOG_PROGRESS_MIN, logger: this.#o.logger.child({ component: "uplink" }) });
    this.#backlogProgress.observe(this.#o.backlog());
  }

  async stop(budget: StopBudget): Promise<void> {
    const { left } = budget;
    this.#renewal?.stop();
    if (this.#sender) {
      // Waiting for the backlog only helps while the cloud answers.
      await drain(this.#sender, Math.min(budget.drainMs, left(2 * STOP_GRACE_MS)));
      this.#backlogProgress?.stop("stopped");
      await within(this.#sender.stop(Math.min(STOP_GRACE_MS, left(STOP_GRACE_MS))), left(STOP_GRACE_MS / 2));
    }
    this.#tokens?.close();
    if (this.#transport && !(await within(this.#transport.close(), Math.min(STOP_GRACE_MS / 2, left())))) {
      void this.#transport.destroy().catch(() => undefined);
    }
  }

  health(now: number): UplinkPartHealth {
    const sender = this.#sender?.health() ?? null;
    const tokens = this.#tokens?.health() ?? null;
    const certificate = this.#renewal?.health(now) ?? null;
    const problems: Problem[] = [];
    // The renewal knows the certificate in service, also after one it had to rotate back out.
    const current = this.#renewal?.identity ?? this.#identity;
    const notAfter = current?.notAfter;
    const identity = current ? { instanceId: "instanceId" in current ? (current.instanceId as string) : null, notAfter: current.notAfter.toISOString() } : null;
    if (notAfter && notAfter.getTime() <= now) {
      const why = certificate?.lastRenewalError ? `; last renewal error: ${certificate.lastRenewalError}` : "";
      problems.push({ part: this.name, reason: `the instance certificate expired on ${notAfter.toISOString()}${why}; enrol again with a new bootstrap token: kerf enroll --token-file FILE`, code: "CERT_EXPIRED" });
    }
    problems.push(...identityProblems(this.name, now, certificate, tokens));
    const warnings = uplinkWarnings(this.name, now, certificate, tokens);
    if (!sender) return { problems, warnings, sender, tokens, certificate, identity };
    const backlog = this.#o.backlog();
    if (backlog === 0) this.#emptyAt = now;
    const since = Math.max(sender.lastAckAt ?? this.#startedAt, this.#emptyAt);
    const silentMs = now - since;
    if (backlog === 0 || silentMs <= this.ackLimitMs) return { problems, warnings, sender, tokens, certificate, identity };
    const reason = `no acknowledgement from the cloud for ${Math.round(silentMs / 1000)} s while ${backlog} values wait (limit ${Math.round(this.ackLimitMs / 1000)} s)${sender.lastError ? `; last error: ${sender.lastError}` : ""}`;
    problems.push({ part: this.name, reason, ...(sender.lastErrorCode ? { code: sender.lastErrorCode } : {}) });
    return { problems, warnings, sender, tokens, certificate, identity };
  }
}

/** Renewals that keep failing while the old certificate or token still works: the verdict stays healthy, but the operator should know before it runs out. */
function uplinkWarnings(part: string, now: number, certificate: RenewalHealth | null, tokens: TokenHealth | null): Problem[] {
  const warnings: Problem[] = [];
  if (certificate && !certificate.expired && certificate.lastRenewalError) {
    warnings.push({ part, reason: `the instance certificate could not be renewed (it expires in ${certificate.daysToExpiry} days, on ${certificate.notAfter}): ${certificate.lastRenewalError}`, code: "CERT_ENROLMENT" });
  }
  // cleared by the next token that comes; without a valid token it is a problem (identity-health.ts)
  if (tokens?.lastError && tokens.expiresAt !== null && tokens.expiresAt > now) {
    warnings.push({ part, reason: `no new access token (the current one expires at ${new Date(tokens.expiresAt).toISOString()}): ${tokens.lastError}`, code: "AUTH_TOKEN" });
  }
  return warnings;
}

/** Waits for the backlog to go out, at most `ms`, and no longer once the cloud stops acknowledging. */
async function drain(sender: Sender, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  let lastAck = sender.health().lastAckAt;
  while (sender.health().consecutiveFailures === 0) {
    const slice = Math.min(500, deadline - Date.now());
    if (slice <= 0 || (await sender.drain(slice))) return;
    const ack = sender.health().lastAckAt;
    if (ack === lastAck) return;
    lastAck = ack;
  }
}
