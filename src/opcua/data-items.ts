import {
  DataChangeNotification,
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
    if (this.#items.size > this.#last - this.#first) throw new Error("no free client handle");
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
  if (got !== sent) throw new Error(`the server answered ${service} with ${got} results for ${sent} items`);
}

/**
 * Calls `onValue` for each data change the subscription receives, message by message in the
 * order node-opcua hands them on, once node-opcua has decoded structures of types it has to
 * learn from the server. Returns a function that stops the calls.
 */
export function onDataChanges(
  subscription: ClientSubscription,
  session: ClientSession,
  onValue: (handle: number, value: DataValue) => void,
  onPromoteError: (err: Error) => void,
): () => void {
  let chain: Promise<void> = Promise.resolve();
  let stopped = false;
  const dispatch = (changes: DataChangeNotification[]) => {
    if (stopped) return;
    for (const n of changes) for (const mi of n.monitoredItems ?? []) onValue(mi.clientHandle, mi.value);
  };
  const listener = (message: NotificationMessage) => {
    const data = message.notificationData ?? [];
    const changes = data.filter((n): n is DataChangeNotification => n instanceof DataChangeNotification);
    if (changes.length === 0) return;
    // chained, so that a message waiting for a structure definition does not let later ones pass it
    chain = chain
      .then(() => promoteOpaqueStructureInNotificationData(session, changes))
      .catch((err: Error) => onPromoteError(err))
      .then(() => dispatch(changes));
  };
  subscription.on("raw_notification", listener);
  return () => {
    stopped = true;
    subscription.off("raw_notification", listener);
  };
}
