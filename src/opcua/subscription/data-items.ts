import { OpaqueStructure } from "node-opcua-extension-object";
import {
  DataChangeNotification,
  DataType,
  MonitoringMode,
  promoteOpaqueStructureInNotificationData,
  TimestampsToReturn,
  type ClientSession,
  type ClientSessionRawSubscriptionService,
  type ClientSubscription,
  type DataValue,
  type ModifyMonitoredItemsRequestOptions,
  type ModifyMonitoredItemsResponse,
  type MonitoringParametersOptions,
  type NotificationMessage,
  type ReadValueIdOptions,
  type StatusCode,
} from "node-opcua-client";
import { KerfError } from "../../errors.ts";

/*
 * Data points are monitored through the raw services, not node-opcua's ClientMonitoredItem:
 * those cost about 800 bytes and a listener closure per item (80 MB at 100,000 items) and two
 * event emits per value. Events (few, with filters) still use node-opcua's objects.
 */

type RawSession = ClientSession & ClientSessionRawSubscriptionService;
// modifyMonitoredItems' overload with an optional callback hides its promise form from TypeScript
type Modify = (request: ModifyMonitoredItemsRequestOptions) => Promise<ModifyMonitoredItemsResponse>;

/** node-opcua numbers its own monitored items (our events) from 1 in each subscription; ours start far above. */
const FIRST_HANDLE = 0x4000_0000;
const LAST_HANDLE = 0xffff_fff0;

/** Client handles of data items, unique across all subscriptions of one session. */
export class HandleTable<T> {
  readonly #first: number;
  readonly #last: number;
  #next: number;
  readonly #items = new Map<number, T>();

  /** The range is there for tests; a session never uses up a billion handles. */
  constructor(first = FIRST_HANDLE, last = LAST_HANDLE) {
    this.#first = first;
    this.#last = last;
    this.#next = first;
  }

  /** A free handle, now naming `item`. */
  add(item: T): number {
    if (this.#items.size > this.#last - this.#first) throw new KerfError("INTERNAL", "no free client handle");
    while (this.#items.has(this.#next)) this.#advance();
    const handle = this.#next;
    this.#advance();
    this.#items.set(handle, item);
    return handle;
  }

  get(handle: number): T | undefined {
    return this.#items.get(handle);
  }

  delete(handle: number): void {
    this.#items.delete(handle);
  }

  get size(): number {
    return this.#items.size;
  }

  #advance(): void {
    this.#next = this.#next >= this.#last ? this.#first : this.#next + 1;
  }
}

export interface ItemResult {
  status: StatusCode;
  /** The server's monitored item id; 0 when it refused the item. */
  id: number;
}

/** One CreateMonitoredItems call; results in the order of `items`. */
export async function createItems(
  session: ClientSession,
  subscriptionId: number,
  items: readonly { handle: number; item: ReadValueIdOptions }[],
  parameters: MonitoringParametersOptions,
): Promise<ItemResult[]> {
  const response = await (session as RawSession).createMonitoredItems({
    subscriptionId,
    timestampsToReturn: TimestampsToReturn.Both,
    itemsToCreate: items.map((i) => ({
      itemToMonitor: i.item,
      monitoringMode: MonitoringMode.Reporting,
      requestedParameters: { ...parameters, clientHandle: i.handle },
    })),
  });
  const results = response.results ?? [];
  checkCount("CreateMonitoredItems", results.length, items.length);
  return results.map((r) => ({ status: r.statusCode, id: r.statusCode.isGood() ? r.monitoredItemId : 0 }));
}

/** One ModifyMonitoredItems call; a status per item. */
export async function modifyItems(
  session: ClientSession,
  subscriptionId: number,
  items: readonly { id: number; handle: number }[],
  parameters: MonitoringParametersOptions,
): Promise<StatusCode[]> {
  const raw = session as RawSession;
  const response = await (raw.modifyMonitoredItems as Modify).call(raw, {
    subscriptionId,
    timestampsToReturn: TimestampsToReturn.Both,
    itemsToModify: items.map((i) => ({ monitoredItemId: i.id, requestedParameters: { ...parameters, clientHandle: i.handle } })),
  });
  const results = response.results ?? [];
  checkCount("ModifyMonitoredItems", results.length, items.length);
  return results.map((r) => r.statusCode);
}

/** One DeleteMonitoredItems call. An item the server no longer has is as good as deleted. */
export async function deleteItems(session: ClientSession, subscriptionId: number, ids: readonly number[]): Promise<void> {
  if (ids.length === 0) return;
  await (session as RawSession).deleteMonitoredItems({ subscriptionId, monitoredItemIds: [...ids] });
}

function checkCount(service: string, got: number, sent: number): void {
  if (got !== sent) throw new KerfError("OPCUA_PROTOCOL", `the server answered ${service} with ${got} results for ${sent} items`);
}

/**
 * How long the messages of a subscription wait for node-opcua to learn the types of the
 * structures in one of them from the server. A server that never answers must not stop the
 * other values: past this, the message goes on with the structure undecoded.
 */
export const PROMOTE_WAIT_MS = 5_000;
/** A type whose structures could not be decoded is not waited for again for this long. */
const UNDECODABLE_RETRY_MS = 10 * 60_000;

export interface DataChangeReport {
  /** node-opcua could not decode structures with the server's type definitions. */
  promoteFailed(err: Error): void;
  /** The type definitions did not come within `waitedMs`: these items' structures go on undecoded. */
  promoteStuck(handles: number[], waitedMs: number): void;
  /** Handing values on threw: a bug, but the next messages must still pass. */
  dispatchFailed(err: Error): void;
}

/**
 * Calls `onValue` for each data change the subscription receives, message by message in the
 * order node-opcua hands them on, once node-opcua has decoded structures of types it has to
 * learn from the server. Returns a function that stops the calls.
 *
 * Only a message with such a structure waits (and the messages after it, to keep the order),
 * for at most `waitMs`; while one learning is still under way past that, later messages do
 * not wait for it again, and a type that could not be decoded is not waited for again for
 * 10 minutes. Its structures go on undecoded: encode.ts sends them as null with
 * BadDataEncodingInvalid, and logs the data point.
 */
export function onDataChanges(
  subscription: ClientSubscription,
  session: ClientSession,
  onValue: (handle: number, value: DataValue) => void,
  report: DataChangeReport,
  waitMs = PROMOTE_WAIT_MS,
): () => void {
  let chain: Promise<void> = Promise.resolve();
  /** Messages in the chain, not yet handed on. */
  let queued = 0;
  /** A learning still running past `waitMs`. */
  let stuck: Promise<void> | null = null;
  /** Encoding ids of types that could not be decoded, and until when they are not waited for. */
  const undecodable = new Map<string, number>();
  let stopped = false;
  const dispatch = (changes: DataChangeNotification[]) => {
    if (stopped) return;
    for (const n of changes) for (const mi of n.monitoredItems ?? []) onValue(mi.clientHandle, mi.value);
  };
  const promote = (changes: DataChangeNotification[]): Promise<void> => {
    if (stuck || stopped) return Promise.resolve();
    const learning = promoteOpaqueStructureInNotificationData(session, changes).catch((err: Error) => {
      if (!stopped) report.promoteFailed(err);
    });
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        stuck = learning;
        void learning.then(() => {
          if (stuck === learning) stuck = null;
        });
        if (!stopped) report.promoteStuck([...new Set(opaque(changes, "handles"))], waitMs);
        resolve();
      }, waitMs);
      void learning.then(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  };
  /** Does a structure in `changes` need node-opcua to learn its type? */
  const waits = (changes: DataChangeNotification[]): boolean => {
    const types = opaque(changes, "types");
    if (types.length === 0) return false;
    const now = Date.now();
    return types.some((t) => (undecodable.get(t) ?? 0) <= now);
  };
  const listener = (message: NotificationMessage) => {
    const data = message.notificationData ?? [];
    const changes: DataChangeNotification[] = [];
    const others: typeof data = [];
    for (const n of data) {
      if (n instanceof DataChangeNotification) changes.push(n);
      else others.push(n);
    }
    if (changes.length === 0) return;
    // node-opcua goes on to decode the structures of this message itself, for its own monitored
    // items, and lets a failure of that (the session closing, a read timing out) go unhandled,
    // which ends the process. Data items are not node-opcua's: their changes are ours alone.
    message.notificationData = others;
    if (queued === 0 && !waits(changes)) return dispatch(changes);
    queued++;
    // chained, so that a message waiting for a structure definition does not let later ones pass it
    chain = chain
      .then(() => promote(changes))
      .then(() => {
        queued--;
        const until = Date.now() + UNDECODABLE_RETRY_MS;
        for (const t of opaque(changes, "types")) undecodable.set(t, until);
        dispatch(changes);
      })
      .catch((err: Error) => report.dispatchFailed(err));
  };
  subscription.on("raw_notification", listener);
  return () => {
    stopped = true;
    subscription.off("raw_notification", listener);
  };
}

/** A structure node-opcua has yet to decode with the server's type definitions (what promoteOpaqueStructure looks for). */
function opaqueOf(value: DataValue): OpaqueStructure | null {
  const v = value.value;
  if (!v || v.dataType !== DataType.ExtensionObject) return null;
  const x = v.value as unknown;
  const first = Array.isArray(x) ? (x[0] as unknown) : x;
  return first instanceof OpaqueStructure ? first : null;
}

/** The client handles of the values with such structures, or their types' encoding ids. */
function opaque(changes: DataChangeNotification[], what: "handles"): number[];
function opaque(changes: DataChangeNotification[], what: "types"): string[];
function opaque(changes: DataChangeNotification[], what: "handles" | "types"): (number | string)[] {
  const out: (number | string)[] = [];
  for (const n of changes) {
    for (const mi of n.monitoredItems ?? []) {
      const o = opaqueOf(mi.value);
      if (o) out.push(what === "handles" ? mi.clientHandle : o.nodeId.toString());
    }
  }
  return out;
}
