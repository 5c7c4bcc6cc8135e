import { StatusCodes, type ClientSession, type ClientSubscription, type NotificationMessage } from "node-opcua-client";
import type { Logger } from "../log.ts";

/** Sequence numbers are UInt32 and skip 0 when they wrap (OPC UA Part 4, 7.38). */
const MAX_SEQ = 0xffffffff;
/** A jump larger than this is a new numbering (the server recreated the subscription), not a gap to fill. */
const MAX_GAP = 10_000;

export function nextSeq(n: number): number {
  return n >= MAX_SEQ ? 1 : n + 1;
}

/** Orders sequence numbers oldest first, across a wrap. */
export function compareSeq(a: number, b: number): number {
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


/** How long received messages wait for an older one that is being republished. */
const HOLD_MS = 5_000;

export interface SequenceGuard {
  /** Hands on every message still held back, giving up on what is missing before them. */
  flush(): void;
}

/**
 * Puts a SequenceTracker in front of a subscription's notification handling: every
 * NotificationMessage, from Publish or Republish, passes it once, and in order. A message seen
 * before is dropped. When numbers were skipped, they are asked for with Republish, one at a time,
 * and the messages after them wait (at most HOLD_MS): node-opcua's server sends what a lost
 * response carried a second time in its next message, and only in order does that repeat follow
 * the original, where the subscription set drops it. node-opcua keeps driving the subscription;
 * only what it hands on is checked.
 */
export function guardSequence(subscription: ClientSubscription, session: ClientSession, log: Logger, counters: SequenceCounters): SequenceGuard {
  const sub = subscription as unknown as SubscriptionInternals;
  const deliver = sub.onNotificationMessage.bind(sub);
  let id = sub.subscriptionId;
  let tracker = new SequenceTracker();
  const held = new Map<number, NotificationMessage>();
  let holdTimer: NodeJS.Timeout | undefined;
  let filling = false;

  const giveUp = (seqs: number[]): void => {
    for (const seq of seqs) tracker.forget(seq);
    counters.lost += seqs.length;
    log.warn({ subscriptionId: id, messages: seqs.length, first: seqs[0] }, "notification messages skipped in transit are no longer on the server: their values are lost");
  };

  /** Hands on the held messages that no missing number comes before, oldest first. */
  const release = (): void => {
    const firstMissing = tracker.missing()[0];
    for (const seq of [...held.keys()].sort(compareSeq)) {
      if (firstMissing !== undefined && compareSeq(firstMissing, seq) < 0) break;
      const message = held.get(seq)!;
      held.delete(seq);
      deliver(message);
    }
    if (held.size === 0) {
      clearTimeout(holdTimer);
      holdTimer = undefined;
    } else if (!holdTimer) {
      holdTimer = setTimeout(() => {
        holdTimer = undefined;
        if (tracker.hasMissing()) giveUp(tracker.missing());
        release();
      }, HOLD_MS);
      holdTimer.unref();
    }
  };

  const fill = async (): Promise<void> => {
    if (filling) return;
    filling = true;
    try {
      for (const seq of tracker.missing()) {
        // node-opcua's own Republish loop may have brought it meanwhile.
        if (!tracker.isMissing(seq)) continue;
        const subscriptionId = id;
        let message: NotificationMessage | undefined;
        try {
          const response = await (session as unknown as SessionInternals).republish({ subscriptionId, retransmitSequenceNumber: seq });
          if (response.responseHeader.serviceResult.isGood()) message = response.notificationMessage;
        } catch (err) {
          const status = (err as { response?: { responseHeader?: { serviceResult?: { value: number } } } }).response?.responseHeader?.serviceResult?.value;
          const notAvailable = status === StatusCodes.BadMessageNotAvailable.value || /BadMessageNotAvailable/.test((err as Error).message);
          // Any other failure (the channel broke again) leaves the number to ask for on the next message.
          if (!notAvailable) return;
        }
        if (subscriptionId !== id || !tracker.isMissing(seq)) continue;
        if (message?.sequenceNumber === seq) {
          counters.recovered++;
          sub.onNotificationMessage(message);
          (session as unknown as SessionInternals).getPublishEngine?.().acknowledge_notification?.(subscriptionId, seq);
        } else {
          giveUp([seq]);
          release();
        }
      }
    } finally {
      filling = false;
    }
  };

  sub.onNotificationMessage = (message: NotificationMessage) => {
    if (sub.subscriptionId !== id) {
      // node-opcua recreated the subscription on the server: a new numbering starts.
      id = sub.subscriptionId;
      tracker = new SequenceTracker();
      held.clear();
    }
    const keepAlive = !message.notificationData?.length;
    const verdict = tracker.accept(message.sequenceNumber, keepAlive);
    if (verdict.gap.length > 0) log.warn({ subscriptionId: id, skipped: verdict.gap.length, first: verdict.gap[0] }, "notification messages skipped in transit; asking the server to republish them");
    if (!verdict.deliver) counters.duplicates++;
    else if (keepAlive) deliver(message);
    else {
      held.set(message.sequenceNumber, message);
      release();
    }
    // node-opcua republishes after a break from the number after this one: never go back.
    if (tracker.highest !== null) sub.lastSequenceNumber = tracker.highest;
    if (tracker.hasMissing()) void fill();
  };

  return {
    flush() {
      if (tracker.hasMissing()) giveUp(tracker.missing());
      release();
    },
  };
}
