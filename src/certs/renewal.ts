/**
 * Renewal of the instance certificate over EST `/simplereenroll`, while values flow.
 *
 * At `renewAt` of the certificate's lifetime (2/3 by default) it stages the next identity in
 * `identity/next/` (a new key when rekeying, else the same one; then the certificate), puts it
 * in service with `transport.rotate()` (requests in flight finish on the old connections; the
 * data path never stops), waits until a request with the new certificate has succeeded, and
 * only then promotes it over the old files by rename. Until then the old identity stays on
 * disk; a crash at any step leaves a usable pair that loadIdentity (identity.ts) finds.
 *
 * A failure keeps the old certificate in service and on disk, is logged as a warning with the
 * days left, shows in health, and is retried with backoff. A renewed certificate that the cloud
 * refuses (three connection failures with it and no success) is rotated back out.
 */
import { EventEmitter } from "node:events";
import { X509Certificate } from "node:crypto";
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync } from "node:fs";
import { DecoratorHandler, type Dispatcher } from "undici";
import { backoff } from "../backoff.ts";
import { KerfError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { ClientIdentity } from "../uplink/transport.ts";
import type { EstClient } from "./est.ts";
import { writeFileAtomic } from "./files.ts";
import { certProblem, createCsr, identityPaths, type Identity } from "./identity.ts";
import { generateKeyPair, privateKeyToPem, type KeyType } from "./x509.ts";

/** The steps of a renewal, in order; `onStep` is told each one once it is durable. */
export const RENEWAL_STEPS = ["key-staged", "cert-staged", "rotated", "confirmed", "key-promoted", "cert-promoted", "done"] as const;
export type RenewalStep = (typeof RENEWAL_STEPS)[number];

const DAY_MS = 86_400_000;
/** setTimeout's largest delay. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Connection failures with a new certificate, without one success, before it is rotated back out. */
const REFUSED_AFTER = 3;

export interface RenewalOptions {
  dir: string;
  instance: string;
  /** EST client whose dispatcher presents the certificate in service (the uplink transport). */
  est: EstClient;
  transport: { rotate(identity: ClientIdentity): void };
  /** Fraction of the lifetime (notBefore..notAfter) at which to renew. */
  renewAt: number;
  rekey: boolean;
  keyType: KeyType;
  retry: { initialDelayMs: number; maxDelayMs: number };
  logger: Logger;
  /** Told each step once it is done (tests use it to crash at a given step). */
  onStep?: (step: RenewalStep) => void;
}

export interface RenewalHealth {
  instanceId: string;
  notAfter: string;
  daysToExpiry: number;
  expired: boolean;
  renewals: number;
  lastRenewalError: string | null;
  nextRenewalAt: string | null;
  /** A renewal is under way (its nextRenewalAt may lie in the past meanwhile). */
  renewing: boolean;
}

/**
 * Emits "renewed" (identity) once a renewed certificate is in service (after rotate), and
 * "failed" (error) for each failed attempt.
 */
export class CertificateRenewal extends EventEmitter {
  readonly #o: RenewalOptions;
  #identity: Identity;
  #timer: NodeJS.Timeout | null = null;
  #nextAt: number | null = null;
  #attempts = 0;
  #renewals = 0;
  #lastError: string | null = null;
  #running: Promise<Identity> | null = null;
  #stopped = false;
  /** Bumped at each rotation: a response counts for the identity in service when its request was dispatched. */
  #generation = 0;
  #waiting: { generation: number; failures: number; settle: (ok: boolean) => void } | null = null;

  constructor(identity: Identity, options: RenewalOptions) {
    super();
    this.#identity = identity;
    this.#o = options;
  }

  get identity(): Identity {
    return this.#identity;
  }

  get renewals(): number {
    return this.#renewals;
  }

  /** When the certificate in service is due for renewal. */
  dueAt(identity = this.#identity): number {
    const cert = new X509Certificate(identity.certPem);
    const from = new Date(cert.validFrom).getTime();
    const to = new Date(cert.validTo).getTime();
    return from + this.#o.renewAt * (to - from);
  }

  start(): void {
    this.#schedule(this.dueAt());
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#waiting?.settle(false);
  }

  /**
   * Watches the requests of whoever uses the transport: a 2xx answer to a request dispatched
   * after a rotation shows that the new certificate works.
   */
  interceptor(): Dispatcher.DispatchInterceptor {
    return (dispatch) => (opts, handler) => {
      const generation = this.#generation;
      return dispatch(opts, new Watch(handler, (ok) => this.#observed(generation, ok)));
    };
  }

  /** Renews now (one renewal at a time); resolves to the identity in service afterwards. */
  renewNow(): Promise<Identity> {
    this.#running ??= this.#renew().finally(() => (this.#running = null));
    return this.#running;
  }

  health(now = Date.now()): RenewalHealth {
    const notAfter = this.#identity.notAfter.getTime();
    return {
      instanceId: this.#identity.instanceId,
      notAfter: this.#identity.notAfter.toISOString(),
      daysToExpiry: Math.round(((notAfter - now) / DAY_MS) * 100) / 100,
      expired: notAfter <= now,
      renewals: this.#renewals,
      lastRenewalError: this.#lastError,
      nextRenewalAt: this.#nextAt === null ? null : new Date(this.#nextAt).toISOString(),
      renewing: this.#running !== null,
    };
  }

  #schedule(at: number): void {
    if (this.#stopped) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#nextAt = at;
    const delay = Math.max(0, at - Date.now());
    this.#timer = setTimeout(() => {
      this.#timer = null;
      // A long wait is cut into setTimeout-sized pieces.
      if (Date.now() < at) return this.#schedule(at);
      void this.renewNow().then(
        () => undefined,
        () => undefined,
      );
    }, Math.min(delay, MAX_TIMER_MS));
    this.#timer.unref();
  }

  async #renew(): Promise<Identity> {
    const log = this.#o.logger;
    try {
      const identity = await this.#steps();
      this.#attempts = 0;
      this.#lastError = null;
      this.#renewals++;
      this.#schedule(this.dueAt(identity));
      return identity;
    } catch (err) {
      // Stopping cut it short: nothing to report or retry.
      if (this.#stopped) throw err;
      this.#attempts++;
      const message = (err as Error).message;
      this.#lastError = message;
      const now = Date.now();
      const days = (this.#identity.notAfter.getTime() - now) / DAY_MS;
      const expired = days <= 0;
      const retryIn = backoff(this.#attempts, this.#o.retry);
      if (expired) {
        log.error(
          { event: "cert_expired", code: "CERT_EXPIRED", notAfter: this.#identity.notAfter.toISOString(), attempt: this.#attempts, err: message },
          "the instance certificate has expired and could not be renewed; enrol again with a new bootstrap token: kerf enroll --token-file FILE",
        );
      } else {
        log.warn({ event: "cert_renewal_failed", attempt: this.#attempts, daysToExpiry: Math.round(days * 100) / 100, retryInMs: retryIn, err: message }, "certificate renewal failed; the current certificate stays in service");
      }
      this.emit("failed", err);
      this.#schedule(now + retryIn);
      throw err;
    }
  }

  async #steps(): Promise<Identity> {
    const o = this.#o;
    const files = identityPaths(o.dir);
    const step = (s: RenewalStep) => o.onStep?.(s);
    const old = this.#identity;
    rmSync(files.next, { recursive: true, force: true });
    mkdirSync(files.next, { mode: 0o700 });
    const keyPem = o.rekey ? await privateKeyToPem((await generateKeyPair(o.keyType)).privateKey) : old.keyPem;
    writeFileAtomic(files.nextKey, keyPem, 0o600);
    step("key-staged");

    const chainPem = await o.est.reenroll(await createCsr(keyPem, o.instance));
    // A stop while the request ran: do not rotate into a transport that is draining to close.
    if (this.#stopped) throw new KerfError("CERT_ENROLMENT", "the renewal was cut short by the connector stopping");
    const problem = certProblem(chainPem, keyPem, o.instance, new Date());
    if (problem !== null) throw new KerfError("CERT_ENROLMENT", `the EST server renewed with an unusable certificate: ${problem}`);
    writeFileAtomic(files.nextCert, chainPem, 0o644);
    step("cert-staged");

    const next: Identity = { ...old, certPem: chainPem, keyPem, notAfter: new Date(new X509Certificate(chainPem).validTo) };
    const worked = this.#awaitConfirmation(old.notAfter.getTime());
    o.transport.rotate({ certPem: chainPem, keyPem });
    this.#generation++;
    this.#identity = next;
    step("rotated");
    this.emit("renewed", next);
    o.logger.info({ event: "cert_renewed", notAfter: next.notAfter.toISOString(), serial: new X509Certificate(chainPem).serialNumber, rekey: o.rekey }, "certificate renewed; it replaces the old one on disk once a request with it has succeeded");

    if (!(await worked)) {
      if (this.#stopped) return next;
      // The cloud does not take the new certificate: back to the one that worked.
      o.transport.rotate({ certPem: old.certPem, keyPem: old.keyPem });
      this.#generation++;
      this.#identity = old;
      rmSync(files.next, { recursive: true, force: true });
      throw new KerfError("CERT_ENROLMENT", "the cloud refused the renewed certificate; the previous one is back in service");
    }
    step("confirmed");

    // Key first: after a crash between the renames the new key and the staged certificate
    // still form a usable pair, which loadIdentity puts in service.
    renameSync(files.nextKey, files.key);
    syncDirs(files.dir, files.next);
    step("key-promoted");
    renameSync(files.nextCert, files.cert);
    syncDirs(files.dir, files.next);
    step("cert-promoted");
    rmSync(files.next, { recursive: true, force: true });
    syncDirs(files.dir);
    step("done");
    return next;
  }

  /** Resolves true on the first success with the next certificate, false when it is refused, or true when the old one runs out anyway. */
  #awaitConfirmation(oldNotAfter: number): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => settle(true), Math.min(MAX_TIMER_MS, Math.max(0, oldNotAfter - Date.now())));
      timer.unref();
      const settle = (ok: boolean) => {
        clearTimeout(timer);
        this.#waiting = null;
        resolve(ok);
      };
      this.#waiting = { generation: this.#generation + 1, failures: 0, settle };
    });
  }

  #observed(generation: number, ok: boolean): void {
    const w = this.#waiting;
    if (!w || w.generation !== generation) return;
    if (ok) return w.settle(true);
    if (++w.failures >= REFUSED_AFTER) w.settle(false);
  }
}

/** Reports each response: a 2xx, a 403, or a failure of the connection (not an abort or a timeout, which say nothing about the certificate). */
class Watch extends DecoratorHandler {
  readonly #report: (ok: boolean) => void;

  constructor(handler: Dispatcher.DispatchHandler, report: (ok: boolean) => void) {
    super(handler);
    this.#report = report;
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>, statusMessage?: string): void {
    if (statusCode >= 200 && statusCode < 300) this.#report(true);
    // The cloud took the handshake but forbids this certificate (revoked, not yet registered):
    // as much a refusal of it as a closed connection, and the sender would retry it for ever.
    else if (statusCode === 403) this.#report(false);
    (DecoratorHandler.prototype as Required<Dispatcher.DispatchHandler>).onResponseStart.call(this, controller, statusCode, headers, statusMessage);
  }

  onResponseError(controller: Dispatcher.DispatchController, err: Error): void {
    const code = (err as NodeJS.ErrnoException).code ?? "";
    if (/^(UND_ERR_SOCKET|ECONNRESET|ERR_SSL|ERR_TLS)/.test(code)) this.#report(false);
    (DecoratorHandler.prototype as Required<Dispatcher.DispatchHandler>).onResponseError.call(this, controller, err);
  }
}

function syncDirs(...dirs: string[]): void {
  for (const dir of dirs) {
    let fd: number;
    try {
      fd = openSync(dir, "r");
    } catch {
      continue;
    }
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}
