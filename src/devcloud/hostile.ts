/**
 * The hostile reference cloud: a devcloud that fails part of its ingest requests the way real
 * clouds behind load balancers do. Each valid ingest request meets a fault with probability
 * `rate`; the kind is drawn by weight from `mix`. Both draws come from a generator seeded with
 * `seed`, so the n-th request of a run meets the same fault in every run with the same seed
 * (which batch is the n-th depends on the connector's timing; the sequence of faults does not).
 *
 *   reset        the connection is closed without an answer; nothing is stored
 *   unavailable  503 with Retry-After: 1; nothing is stored
 *   throttled    429 with Retry-After: 1; nothing is stored
 *   tooLarge     413 for a batch that would have passed; the connector splits it. Only batches of
 *                at least `tooLargeMinItems` items get it, so the halves of halves end up passing
 *                and a split never ends in a dead letter; and never a batch the cloud has already
 *                stored, which must get its 200 (a split would store its items again under new keys)
 *   lostAnswer   the batch is stored, then the connection is closed without an answer: the
 *                connector's retry under the same idempotency key must be counted once
 *   drip         the batch is stored, then the 200 trickles out one byte every `dripIntervalMs`:
 *                its headers on odd drips, its body on even ones
 */
import type { ServerResponse } from "node:http";
import { seededRandom } from "../simulator/simulation.ts";
import { KerfError } from "../errors.ts";

export const FAULT_KINDS = ["reset", "unavailable", "throttled", "tooLarge", "lostAnswer", "drip"] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface HostileOptions {
  /** Share of valid ingest requests that meet a fault, 0..1. */
  rate: number;
  seed: number;
  /** Relative weights of the kinds; a kind left out does not occur. Default: all equal. */
  mix?: Partial<Record<FaultKind, number>>;
  /** Default 200 ms. */
  dripIntervalMs?: number;
  /** Smallest batch that may get a 413; smaller ones are answered normally instead. Default 100 items. */
  tooLargeMinItems?: number;
}

export interface Hostile {
  readonly options: Readonly<Required<HostileOptions>>;
  /** Faults injected so far, by kind. */
  readonly counts: Record<FaultKind, number>;
  /** Drips in progress now. */
  readonly dripping: number;
  /**
   * The fault for the next ingest request, of a batch of `items` items that the cloud has
   * already stored or not, or undefined for a normal answer.
   */
  pick(items: number, stored?: boolean): FaultKind | undefined;
  /** Answers with a drip of `status` and `body`; see the module comment. */
  drip(res: ServerResponse, status: number, body: string): void;
}

export function createHostile(options: HostileOptions): Hostile {
  if (!(options.rate >= 0 && options.rate <= 1)) throw new KerfError("INTERNAL", `fault rate must be between 0 and 1, got ${options.rate}`);
  const mix = options.mix ?? Object.fromEntries(FAULT_KINDS.map((k) => [k, 1]));
  const weights = FAULT_KINDS.map((k) => Math.max(0, mix[k] ?? 0));
  const total = weights.reduce((a, b) => a + b, 0);
  if (options.rate > 0 && total <= 0) throw new KerfError("INTERNAL", "the fault mix gives no kind a weight above 0");
  const o = { dripIntervalMs: 200, tooLargeMinItems: 100, ...options, mix };
  const random = seededRandom(options.seed);
  const counts = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>;
  let dripping = 0;

  return {
    options: o,
    counts,
    get dripping() {
      return dripping;
    },
    pick(items, stored = false) {
      // Two draws per request whatever the outcome, so that the sequence stays the same.
      const faulted = random() < o.rate;
      let at = random() * total;
      if (!faulted) return undefined;
      const kind = FAULT_KINDS.find((_, i) => (at -= weights[i]!) < 0) ?? FAULT_KINDS[weights.findLastIndex((w) => w > 0)]!;
      if (kind === "tooLarge" && (items < o.tooLargeMinItems || stored)) return undefined;
      counts[kind]++;
      return kind;
    },
    drip(res, status, body) {
      const headersToo = counts.drip % 2 === 1;
      const socket = res.socket;
      if (!socket) return;
      const head = `HTTP/1.1 ${status} OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n`;
      let pending: Buffer;
      if (headersToo) {
        // Written past the HTTP server, which then never sees the response end: the socket is closed after the last byte.
        pending = Buffer.from(head + body);
      } else {
        res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body), connection: "close" });
        res.flushHeaders();
        pending = Buffer.from(body);
      }
      dripping++;
      const timer = setInterval(() => {
        const byte = pending.subarray(0, 1);
        pending = pending.subarray(1);
        if (headersToo) socket.write(byte);
        else res.write(byte);
        if (pending.length === 0) {
          clearInterval(timer);
          if (headersToo) socket.end();
          else res.end();
        }
      }, o.dripIntervalMs);
      socket.once("close", () => {
        clearInterval(timer);
        dripping--;
      });
    },
  };
}
