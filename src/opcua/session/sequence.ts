import { StatusCodes, type ClientSession, type ClientSubscription, type NotificationMessage } from "node-opcua-client";
import type { Logger } from "../../log.ts";

/** Sequence numbers are UInt32 and skip 0 when they wrap (OPC UA Part 4, 7.38). */
const MAX_SEQ = 0xffffffff;
/** A jump larger than this is a new numbering (the server recreated the subscription), not a gap to fill. */
const MAX_GAP = 10_000;

function nextSeq(n: number): number {
  return n >= MAX_SEQ ? 1 : n + 1;
}

/** Orders sequence numbers oldest first, across a wrap. */
function compareSeq(a: number, b: number): number {
  return -ahead(a, b);
}

/** How far `to` is ahead of `from`, across a wrap; negative when it is behind. */
function ahead(from: number, to: number): number {
  const d = to - from;
  if (d < -(MAX_SEQ / 2)) return d + MAX_SEQ;
  if (d > MAX_SEQ / 2) return d - MAX_SEQ;
  return d;
}

export interface SequenceVerdict {
  /** Hand the message on: it is new, or it fills a gap. */
  deliver: boolean;
  /** Sequence numbers that this message shows were skipped. */
  gap: number[];
}

/**
 * Which NotificationMessages of one subscription are new, which were seen already, and which
 * were skipped. After a broken channel node-opcua's own Republish loop and the resumed Publish
 * requests race: we measured a message delivered twice, and then ten messages never asked for
 * again, because its loop starts after the last number it saw and stops at the first one the
 * server has no more. Pure, so that the orders we met are unit tests.
 */
export class SequenceTracker {
  /** The highest number received, or the one before a keep-alive's announced next number. */
  #highest: number | null = null;
  readonly #missing = new Set<number>();

  get highest(): number | null {
    return this.#highest;
  }

  /** Skipped numbers still to be asked for, oldest first. */
  missing(): number[] {
    return [...this.#missing].sort(compareSeq);
  }

  accept(seq: number, keepAlive: boolean): SequenceVerdict {
    // A keep-alive carries the number the next data message will have, without using it.
    const last = keepAlive ? (seq === 1 ? MAX_SEQ : seq - 1) : seq;
    if (this.#highest === null) {
      this.#highest = last;
      return { deliver: true, gap: [] };
    }
    const d = ahead(this.#highest, last);
    if (d < -MAX_GAP) {
      // far behind: the server started a new numbering (or wrapped early); start over from here
      this.#missing.clear();
      this.#highest = last;
      return { deliver: true, gap: [] };
    }
    if (d <= 0) {
      if (keepAlive) return { deliver: true, gap: [] };
      const fills = this.#missing.delete(seq);
      return { deliver: fills, gap: [] };
    }
    const gap: number[] = [];
    if (d <= MAX_GAP) {
      for (let s = nextSeq(this.#highest); s !== last; s = nextSeq(s)) gap.push(s);
      // A data message is itself not missing; the number before a keep-alive's is, when it is new.
      if (keepAlive) gap.push(last);
    }
    for (const s of gap) this.#missing.add(s);
    this.#highest = last;
    return { deliver: true, gap };
  }

  hasMissing(): boolean {
    return this.#missing.size > 0;
  }

  isMissing(seq: number): boolean {
    return this.#missing.has(seq);
  }

  /** The server no longer has it: stop asking. */
  forget(seq: number): void {
    this.#missing.delete(seq);
  }
}

/**
 * Messages received after a skipped one wait for it, so that values reach the cloud in order:
 * node-opcua's server sends what a lost response carried once more in its next message, and
 * only in order does that repeat follow the original, where the subscription set drops it.
 * Pure, like the tracker.
 */
export class HeldMessages<M> {
  readonly #held = new Map<number, M>();

  get size(): number {
    return this.#held.size;
  }

  hold(seq: number, message: M): void {
    this.#held.set(seq, message);
  }

  /** Removes and returns, oldest first, the messages that no missing number comes before. */
  ready(firstMissing: number | undefined): M[] {
    const out: M[] = [];
    for (const seq of [...this.#held.keys()].sort(compareSeq)) {
      if (firstMissing !== undefined && compareSeq(firstMissing, seq) < 0) break;
      out.push(this.#held.get(seq)!);
      this.#held.delete(seq);
    }
    return out;
  }

  /** Removes and returns all, oldest first. */
  drain(): M[] {
    return this.ready(undefined);
  }
}

interface SubscriptionInternals {
  subscriptionId: number;
  lastSequenceNumber: number;
  onNotificationMessage(message: NotificationMessage): void;
}

interface SessionInternals {
  republish(request: { subscriptionId: number; retransmitSequenceNumber: number }): Promise<{ responseHeader: { serviceResult: { isGood(): boolean } }; notificationMessage: NotificationMessage }>;
  getPublishEngine?(): PublishEngineInternals;
}

interface PublishEngineInternals {
  acknowledge_notification?(subscriptionId: number, sequenceNumber: number): void;
}

export interface SequenceCounters {
  /** Messages received a second time and dropped. */
  duplicates: number;
  /** Messages skipped in transit and fetched again with Republish. */
  recovered: number;
  /** Messages skipped in transit that the server no longer had: their values are lost. */
  lost: number;
}

/** How long received messages wait for an older one that is being republished; later it is still asked for, and handed on when it comes. */
const HOLD_MS = 5_000;
/** More held messages than this are handed on without waiting (5 s of a 100,000-item group is 500 messages). */
const MAX_HELD = 200;
/** A number whose Republish failed this often (not BadMessageNotAvailable) is given up. */
const MAX_ATTEMPTS = 3;

export interface SequenceGuard {
  /** Hands on every held message and counts what is still missing as lost; the guard then only passes messages through. */
  dispose(): void;
}

/**
 * Puts a SequenceTracker in front of a subscription's notification handling: every
 * NotificationMessage, from Publish or Republish, passes it once, and in order. A message seen
 * before is dropped. Skipped numbers are asked for with Republish, one at a time, until the
 * server has them no more; the messages after them wait (HeldMessages). node-opcua keeps driving
 * the subscription; only what it hands on is checked.
 */
export function guardSequence(subscription: ClientSubscription, session: ClientSession, log: Logger, counters: SequenceCounters): SequenceGuard {
  const sub = subscription as unknown as SubscriptionInternals;
  const deliver = sub.onNotificationMessage.bind(sub);
  const republish = session as unknown as SessionInternals;
  let id = sub.subscriptionId;
  let tracker = new SequenceTracker();
  const held = new HeldMessages<NotificationMessage>();
  const attempts = new Map<number, number>();
  let holdTimer: NodeJS.Timeout | undefined;
  let filling = false;
  let disposed = false;

  const giveUp = (seqs: number[], why: string): void => {
    if (seqs.length === 0) return;
    for (const seq of seqs) {
      tracker.forget(seq);
      attempts.delete(seq);
    }
    counters.lost += seqs.length;
    log.warn({ subscriptionId: id, messages: seqs.length, first: seqs[0] }, `notification messages skipped in transit are lost: ${why}`);
  };

  const handOn = (messages: NotificationMessage[]): void => {
    for (const m of messages) deliver(m);
  };

  const release = (): void => {
    handOn(held.size > MAX_HELD ? held.drain() : held.ready(tracker.missing()[0]));
    if (held.size === 0) {
      clearTimeout(holdTimer);
      holdTimer = undefined;
    } else if (!holdTimer) {
      // armed once when waiting starts: messages that keep arriving do not push it back
      holdTimer = setTimeout(() => {
        holdTimer = undefined;
        // Stop waiting, not asking: a message that comes later is still handed on.
        handOn(held.drain());
      }, HOLD_MS);
      holdTimer.unref();
    }
  };

  const reset = (): void => {
    handOn(held.drain());
    giveUp(tracker.missing(), "the subscription was recreated");
    clearTimeout(holdTimer);
    holdTimer = undefined;
    tracker = new SequenceTracker();
    id = sub.subscriptionId;
  };

  const fill = async (): Promise<void> => {
    if (filling) return;
    filling = true;
    try {
      // Numbers found missing while this runs are asked for in the next round.
      for (let round = tracker.missing(); round.length > 0 && !disposed; round = tracker.missing()) {
        let progressed = false;
        for (const seq of round) {
          if (disposed || !tracker.isMissing(seq)) continue;
          const subscriptionId = id;
          let message: NotificationMessage | undefined;
          let notAvailable = false;
          try {
            const response = await republish.republish({ subscriptionId, retransmitSequenceNumber: seq });
            if (response.responseHeader.serviceResult.isGood()) message = response.notificationMessage;
            else notAvailable = true;
          } catch (err) {
            const status = (err as { response?: { responseHeader?: { serviceResult?: { value: number } } } }).response?.responseHeader?.serviceResult?.value;
            notAvailable = status === StatusCodes.BadMessageNotAvailable.value || /BadMessageNotAvailable/.test((err as Error).message);
            if (!notAvailable) {
              const n = (attempts.get(seq) ?? 0) + 1;
              attempts.set(seq, n);
              if (n >= MAX_ATTEMPTS) giveUp([seq], `Republish failed ${n} times (${(err as Error).message})`);
              // The channel may have broken again: the next message starts another round.
              return;
            }
          }
          if (disposed || subscriptionId !== id || !tracker.isMissing(seq)) continue;
          progressed = true;
          if (message?.sequenceNumber === seq) {
            attempts.delete(seq);
            counters.recovered++;
            sub.onNotificationMessage(message);
            republish.getPublishEngine?.().acknowledge_notification?.(subscriptionId, seq);
          } else {
            giveUp([seq], "the server no longer has them");
            release();
          }
        }
        if (!progressed) return;
      }
    } finally {
      filling = false;
    }
  };

  sub.onNotificationMessage = (message: NotificationMessage) => {
    if (disposed) return deliver(message);
    // node-opcua recreated the subscription on the server: a new numbering starts.
    if (sub.subscriptionId !== id) reset();
    const keepAlive = !message.notificationData?.length;
    const verdict = tracker.accept(message.sequenceNumber, keepAlive);
    if (verdict.gap.length > 0) log.warn({ subscriptionId: id, skipped: verdict.gap.length, first: verdict.gap[0] }, "notification messages skipped in transit; asking the server to republish them");
    if (!verdict.deliver) counters.duplicates++;
    else if (keepAlive) deliver(message);
    else {
      held.hold(message.sequenceNumber, message);
      release();
    }
    // node-opcua republishes after a break from the number after this one (it does not wrap:
    // after 4294967295 it must be told 0, so that it asks for 1). Never go back.
    const highest = tracker.highest;
    if (highest !== null) sub.lastSequenceNumber = highest === MAX_SEQ ? 0 : highest;
    if (tracker.hasMissing()) void fill();
  };

  return {
    dispose() {
      if (disposed) return;
      disposed = true;
      clearTimeout(holdTimer);
      holdTimer = undefined;
      handOn(held.drain());
      giveUp(tracker.missing(), "the subscription ended before they came");
    },
  };
}
