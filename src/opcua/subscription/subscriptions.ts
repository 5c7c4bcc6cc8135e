import {
  AttributeIds,
  DataChangeFilter,
  DataChangeTrigger,
  DataType,
  DeadbandType,
  TimestampsToReturn,
  type ClientMonitoredItemBase,
  type ClientSession,
  type ClientSubscription,
  type DataValue,
  type MonitoringParametersOptions,
  type ReadValueIdOptions,
  type StatusCode,
  type Variant,
} from "node-opcua-client";
import type { Logger } from "../../log.ts";
import type { EventMessage, Item, MessageSink } from "../../message.ts";
import { Progress } from "../../progress.ts";
import { createItems, deleteItems, HandleTable, modifyItems, onDataChanges, type DataChangeReport } from "./data-items.ts";
import { dataValueTime, ValueEncoder } from "./encode.ts";
import { conditionRefreshRequest, prepareEvent, type PreparedEvent } from "./events.ts";
import { Heartbeats } from "./heartbeat.ts";
import { diffMapping, monitoring, type GroupChange } from "./mapping-diff.ts";
import { resolveNodes } from "./resolve.ts";
import { subscriptionPriority } from "./priority.ts";
import { scaleValue } from "./scale.ts";
import { guardSequence, type SequenceCounters, type SequenceGuard } from "../session/sequence.ts";
import type { DataChangeTriggerName, EventSpec, GroupSpec, NodeSpec } from "../types.ts";

/** Used when the server does not state MaxMonitoredItemsPerCall: small enough for any server we met. */
const DEFAULT_ITEMS_PER_CALL = 1000;
/** A group of this many items or more shows its progress while it is subscribed. */
const PROGRESS_MIN_ITEMS = 5_000;
/** How often heartbeats are checked: a heartbeat is at most this late. */
const HEARTBEAT_TICK_MS = 250;

export interface SubscriptionSetOptions {
  session: ClientSession;
  machine: string;
  groups: GroupSpec[];
  namespaceArray: readonly string[];
  /** The server's MaxMonitoredItemsPerCall, 0 when it states none. */
  maxItemsPerCall: number;
  sink: MessageSink;
  logger: Logger;
  onData: () => void;
  /** A value arrived for this group (the session's per-group watchdog). */
  onGroupData?: (group: string) => void;
  onFailure: (reason: string) => void;
  /**
   * The last value delivered per key, kept by the session across reconnects: the first
   * notification of a new monitored item repeats the server's current value, and a value
   * that has not changed since the previous connection must not reach the cloud twice.
   */
  lastDelivered: Map<string, Item>;
  /** Notification messages dropped as duplicates, recovered or lost in transit; kept by the session. */
  sequence: SequenceCounters;
}

/** What `apply` changed, by data point and event key. */
export interface ApplyResult {
  added: string[];
  removed: string[];
  changed: string[];
}

/** One data point's monitored item. */
interface ItemState {
  spec: NodeSpec;
  group: GroupState;
  /** Its client handle, the key of its values in notifications (see HandleTable). */
  handle: number;
  /** The server's monitored item id; 0 while it is not subscribed. */
  id: number;
  /** No notification seen yet since the item was created. */
  first: boolean;
  /** The newest value, also when it was not sent (for a heartbeat switched on later). */
  last: Item | null;
  warnedScale: boolean;
}

interface EventState {
  spec: EventSpec;
  monitored: ClientMonitoredItemBase | null;
}

interface GroupState {
  spec: GroupSpec;
  subscription: ClientSubscription;
  items: Map<string, ItemState>;
  events: Map<string, EventState>;
}

/**
 * The subscriptions of one session: one per mapping group, monitored items created in
 * batches that fit the server's limit. Values of one publish response reach the sink
 * together, as one data message. `apply` turns the subscriptions into those of another
 * mapping by touching only what differs, while everything else keeps flowing.
 *
 * Log lines name a data point `point` and an event subscription `event`: the logger redacts
 * any field called `key`.
 */
export class SubscriptionSet {
  #o: SubscriptionSetOptions;
  #specs: GroupSpec[];
  #groups = new Map<string, GroupState>();
  #pending: Item[] = [];
  #pendingEvents: EventMessage[] = [];
  #flushScheduled = false;
  #heartbeats = new Heartbeats();
  /** Refuses values over the limits of src/opcua/session/limits.ts; logs each key at most every 10 min. */
  #values: ValueEncoder;
  #heartbeatTimer: NodeJS.Timeout | null = null;
  #closed = false;
  readonly #guards = new Map<ClientSubscription, SequenceGuard>();
  /** Stops a subscription's data changes from reaching #onValue. */
  readonly #dispatchers = new Map<ClientSubscription, () => void>();
  readonly #handles = new HandleTable<ItemState>();
  /** Groups that had values since the last flush, for the session's per-group watchdog. */
  readonly #withData = new Set<string>();
  /** create and apply run one at a time. */
  #queue: Promise<unknown> = Promise.resolve();
  itemCount = 0;

  constructor(options: SubscriptionSetOptions) {
    this.#o = options;
    this.#specs = options.groups;
    this.#values = new ValueEncoder({ logger: options.logger });
  }

  /** The mapping the subscriptions currently follow. */
  get groups(): readonly GroupSpec[] {
    return this.#specs;
  }

  /** The server's id of a group's subscription, while it has one. */
  subscriptionId(group: string): number | undefined {
    return this.#groups.get(group)?.subscription.subscriptionId;
  }

  async create(): Promise<void> {
    await this.#serial(async () => {
      for (const group of this.#specs) await this.#createGroup(group);
      this.#startHeartbeats();
    });
  }

  /**
   * Changes the subscriptions to follow `groups`: new groups get a subscription, removed
   * groups lose theirs, and within a group only the monitored items that differ are created,
   * modified (ModifyMonitoredItems) or deleted. On an error the change is partly applied and
   * the error is thrown; reconnecting subscribes to `groups` from scratch.
   */
  async apply(groups: GroupSpec[]): Promise<ApplyResult> {
    return this.#serial(async () => {
      const diff = diffMapping(this.#specs, groups);
      this.#specs = groups;
      for (const name of diff.removeGroups) await this.#removeGroup(name);
      for (const change of diff.changeGroups) await this.#changeGroup(change);
      for (const group of diff.addGroups) await this.#createGroup(group);
      for (const key of diff.removed) this.#o.lastDelivered.delete(key);
      this.#startHeartbeats();
      const result = { added: diff.added, removed: diff.removed, changed: diff.changed };
      this.#o.logger.info({ added: result.added.length, removed: result.removed.length, changed: result.changed.length, items: this.itemCount }, "mapping change applied");
      return result;
    });
  }

  /** Stops the heartbeats; the subscriptions end with the session. */
  close(): void {
    // messages held back for a republish that can no longer come still carry values
    for (const guard of this.#guards.values()) guard.dispose();
    this.#guards.clear();
    for (const stop of this.#dispatchers.values()) stop();
    this.#dispatchers.clear();
    this.#closed = true;
    if (this.#heartbeatTimer) clearInterval(this.#heartbeatTimer);
    this.#heartbeatTimer = null;
  }

  #serial<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(task, task);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  // ---- groups -------------------------------------------------------------------------------

  async #createGroup(spec: GroupSpec): Promise<void> {
    const subscription = await this.#subscriptionFor(spec);
    const group: GroupState = { spec, subscription, items: new Map(), events: new Map() };
    this.#groups.set(spec.name, group);
    subscription.on("status_changed", (status) => {
      if (status.isNotGood() && this.#groups.get(spec.name) === group) this.#o.onFailure(`subscription '${spec.name}' ended by the server: ${status.name}`);
    });
    subscription.on("internal_error", (err) => this.#o.onFailure(`subscription '${spec.name}' failed: ${err.message}`));
    await this.#addItems(group, spec.nodes);
    await this.#addEvents(group, spec.events ?? []);
    // A new subscription learns the alarms that are already active from one ConditionRefresh.
    if (group.events.size > 0) await this.#refreshConditions(group, undefined);
  }

  /**
   * A subscription of the group's own, or, when the server allows no more subscriptions
   * (BadTooManySubscriptions), a share of the existing one whose publishing interval is closest:
   * every item still gets subscribed, at a publishing interval that differs, which is logged.
   */
  async #subscriptionFor(spec: GroupSpec): Promise<ClientSubscription> {
    try {
      const subscription = await this.#o.session.createSubscription2({
        requestedPublishingInterval: spec.publishingInterval,
        requestedMaxKeepAliveCount: keepAliveCount(spec.publishingInterval),
        requestedLifetimeCount: 3 * keepAliveCount(spec.publishingInterval) * 10,
        // 0 = as many as the server allows (node-opcua's: 1,000): many small publish responses
        // cost the server CPU and lose values under load.
        maxNotificationsPerPublish: 0,
        publishingEnabled: true,
        priority: subscriptionPriority(spec),
      });
      this.#guards.set(subscription, guardSequence(subscription, this.#o.session, this.#o.logger, this.#o.sequence));
      this.#dispatchers.set(subscription, onDataChanges(subscription, this.#o.session, (handle, value) => this.#onNotification(handle, value), this.#changeReport));
      return subscription;
    } catch (err) {
      const host = [...this.#groups.values()].sort(
        (a, b) => Math.abs(a.spec.publishingInterval - spec.publishingInterval) - Math.abs(b.spec.publishingInterval - spec.publishingInterval),
      )[0];
      if (!/BadTooManySubscriptions/.test((err as Error).message) || !host) throw err;
      this.#o.logger.warn(
        { group: spec.name, sharesWith: host.spec.name, publishingInterval: host.spec.publishingInterval, wanted: spec.publishingInterval },
        "the server allows no more subscriptions (BadTooManySubscriptions): this group shares another group's subscription and its publishing interval",
      );
      return host.subscription;
    }
  }

  async #removeGroup(name: string): Promise<void> {
    const group = this.#groups.get(name);
    if (!group) return;
    this.#groups.delete(name);
    // A subscription shared with another group (see #subscriptionFor) stays for that group.
    const shared = this.#sharesSubscription(group);
    for (const key of group.items.keys()) this.#heartbeats.delete(key);
    const events = [...group.events.values()].flatMap((e) => (e.monitored ? [e.monitored] : []));
    for (const e of group.events.values()) e.monitored = null;
    this.itemCount -= events.length;
    if (!shared) {
      // terminating the subscription deletes its items on the server
      this.#release([...group.items.values()]);
      this.#guards.get(group.subscription)?.dispose();
      this.#guards.delete(group.subscription);
      this.#dispatchers.get(group.subscription)?.();
      this.#dispatchers.delete(group.subscription);
      await group.subscription.terminate();
      return;
    }
    await this.#deleteItems(group, [...group.items.values()]);
    for (const mi of events) await mi.terminate();
  }

  /** Another group uses this group's subscription (see #subscriptionFor). */
  #sharesSubscription(group: GroupState): boolean {
    return [...this.#groups.values()].some((g) => g !== group && g.subscription === group.subscription);
  }

  async #changeGroup(change: GroupChange): Promise<void> {
    const group = this.#groups.get(change.name);
    if (!group) {
      // its subscription was never made (create failed part-way): make it now
      await this.#createGroup(change.group);
      return;
    }
    group.spec = change.group;
    // A subscription shared after BadTooManySubscriptions keeps its host group's settings.
    const shared = this.#sharesSubscription(group);
    if (change.publishingChanged && !shared) {
      const interval = change.group.publishingInterval;
      await group.subscription.modify({
        requestedPublishingInterval: interval,
        requestedMaxKeepAliveCount: keepAliveCount(interval),
        requestedLifetimeCount: 3 * keepAliveCount(interval) * 10,
        maxNotificationsPerPublish: 0,
        priority: subscriptionPriority(change.group),
      });
    }
    // Deletes first, so that a key recreated at a new address never flows twice.
    const removed = change.remove.map((key) => group.items.get(key)).filter((s): s is ItemState => s !== undefined);
    await this.#deleteItems(group, removed);
    for (const key of change.remove) {
      group.items.delete(key);
      this.#heartbeats.delete(key);
    }

    const retry: NodeSpec[] = [];
    const modify: ItemState[] = [];
    const needsServer = new Set(change.modify);
    const now = Date.now();
    for (const spec of [...change.modify, ...change.update]) {
      const s = group.items.get(spec.key);
      if (!s || s.id === 0) {
        // not subscribed before (did not resolve, or the server refused it): try again
        if (s) this.#release([s]);
        group.items.delete(spec.key);
        retry.push(spec);
        continue;
      }
      s.spec = spec;
      this.#heartbeats.set(spec.key, spec.heartbeatSeconds, now);
      if (s.last) this.#heartbeats.sent(spec.key, s.last, now);
      if (needsServer.has(spec)) modify.push(s);
    }
    await this.#modifyItems(group, modify);
    await this.#addItems(group, [...change.add, ...retry]);

    const gone = change.removeEvents.map((key) => group.events.get(key)).filter((e): e is EventState => e !== undefined);
    for (const e of gone) {
      group.events.delete(e.spec.key);
      if (!e.monitored) continue;
      const mi = e.monitored;
      e.monitored = null;
      this.itemCount--;
      await mi.terminate();
    }
    const added = await this.#addEvents(group, change.addEvents);
    // Only the new event items need the active alarms; ConditionRefresh2 names just them.
    for (const e of added) if (e.monitored?.monitoredItemId !== undefined) await this.#refreshConditions(group, e.monitored.monitoredItemId);
  }

  // ---- data points --------------------------------------------------------------------------

  async #addItems(group: GroupState, nodes: readonly NodeSpec[]): Promise<void> {
    if (nodes.length === 0) return;
    const now = Date.now();
    for (const spec of nodes) {
      const state: ItemState = { spec, group, handle: 0, id: 0, first: true, last: null, warnedScale: false };
      state.handle = this.#handles.add(state);
      group.items.set(spec.key, state);
      this.#heartbeats.set(spec.key, spec.heartbeatSeconds, now);
    }
    const ids = await resolveNodes(this.#o.session, nodes, this.#o.namespaceArray, this.#o.logger);
    const resolved: { state: ItemState; item: ReadValueIdOptions }[] = [];
    for (const spec of nodes) {
      const nodeId = ids.get(spec);
      if (!nodeId) continue;
      const item: ReadValueIdOptions = { nodeId, attributeId: AttributeIds.Value };
      // node-opcua parses the NumericRange text itself
      if (spec.indexRange !== undefined) (item as { indexRange?: unknown }).indexRange = spec.indexRange;
      resolved.push({ state: group.items.get(spec.key)!, item });
    }
    // Two calls in flight: the server creates one batch while the client encodes the next and
    // decodes the last answer, which on a 2-core machine nearly halves the time to subscribe.
    const batches = batchesByParameters(resolved, this.#perCall());
    if (resolved.length < PROGRESS_MIN_ITEMS) return inPairs(batches, (batch) => this.#monitor(group, batch));
    const progress = new Progress({ label: `${this.#o.machine}: subscribing group ${group.spec.name}`, total: resolved.length, unit: "items", logger: this.#o.logger, fields: { group: group.spec.name } });
    try {
      await inPairs(batches, async (batch) => {
        await this.#monitor(group, batch);
        progress.add(batch.length);
      });
      progress.end();
    } catch (err) {
      progress.end("failed");
      throw err;
    }
  }

  async #monitor(group: GroupState, batch: { state: ItemState; item: ReadValueIdOptions }[]): Promise<void> {
    // The handles are in the table already: a value may come before the response does.
    const results = await createItems(
      this.#o.session,
      group.subscription.subscriptionId,
      batch.map((b) => ({ handle: b.state.handle, item: b.item })),
      monitoringParameters(batch[0]!.state.spec),
    );
    results.forEach((r, i) => {
      const state = batch[i]!.state;
      if (r.status.isNotGood()) {
        this.#refused(group, state.spec, r.status, "the server refused to monitor this node");
      } else if (group.items.get(state.spec.key) === state) {
        state.id = r.id;
        this.itemCount++;
      }
    });
  }

  /** A data change from the server; a deleted or replaced item's values still in flight find no handle. */
  #onNotification(handle: number, value: DataValue): void {
    const state = this.#handles.get(handle);
    if (!state) return;
    this.#withData.add(state.group.spec.name);
    this.#onValue(state, value);
    this.#scheduleFlush();
  }

  /** What onDataChanges has to say, in the log; structures it could not decode go out as null with BadDataEncodingInvalid (encode.ts). */
  readonly #changeReport: DataChangeReport = {
    promoteFailed: (err) => this.#o.logger.warn({ err: err.message }, "could not decode a structure value with the server's type definitions; it is sent as null with BadDataEncodingInvalid"),
    promoteStuck: (handles, waitedMs) => {
      for (const handle of handles) {
        const state = this.#handles.get(handle);
        if (!state) continue;
        this.#o.logger.warn(
          { point: state.spec.key, group: state.group.spec.name, waitedMs },
          "the server has not described this structure's type within the wait; its value is sent as null with BadDataEncodingInvalid, and the group's other values go on",
        );
      }
    },
    dispatchFailed: (err) => this.#o.logger.error({ err: err.message }, "handing on data changes failed; the next ones go on"),
  };

  #onValue(state: ItemState, dataValue: DataValue): void {
    const spec = state.spec;
    const encoded = this.#values.encode(spec.key, dataValue);
    let v = encoded.v;
    if (encoded.q === dataValue.statusCode.value && (spec.scale !== undefined || spec.offset !== undefined)) {
      const scaled = scaleValue(v, dataValue.value.dataType, spec.scale ?? 1, spec.offset ?? 0);
      if (!scaled.ok && !state.warnedScale) {
        state.warnedScale = true;
        this.#o.logger.warn({ point: spec.key, dataType: DataType[dataValue.value.dataType] }, "scale/offset configured for a value that is not numeric; sending it unscaled");
      }
      v = scaled.v;
    }
    const item: Item = { key: spec.key, v, q: encoded.q, t: dataValueTime(dataValue) };
    if (spec.unit !== undefined) item.u = spec.unit;
    let before = state.last;
    if (state.first) {
      state.first = false;
      // a skipped first value is not repeated by heartbeats either
      if (spec.skipFirst) return;
      before = this.#o.lastDelivered.get(spec.key) ?? null;
    }
    // The same value with the same timestamp and status is no change. The first notification of a
    // new monitored item repeats the current value, and a server may send a value a second time in
    // the next notification message after a broken channel (node-opcua's does).
    if (before && sameItem(before, item)) {
      state.last = item;
      if (this.#heartbeats.size > 0) this.#heartbeats.sent(spec.key, item, Date.now());
      return;
    }
    state.last = item;
    // the same object as state.last: remembering it costs a map entry, not a copy
    this.#o.lastDelivered.set(spec.key, item);
    if (this.#heartbeats.size > 0) this.#heartbeats.sent(spec.key, item, Date.now());
    this.#pending.push(item);
  }

  async #modifyItems(group: GroupState, states: ItemState[]): Promise<void> {
    const perCall = this.#perCall();
    for (const batch of batchesByParameters(states.map((state) => ({ state })), perCall)) {
      const statuses = await modifyItems(
        this.#o.session,
        group.subscription.subscriptionId,
        batch.map((b) => ({ id: b.state.id, handle: b.state.handle })),
        monitoringParameters(batch[0]!.state.spec),
      );
      statuses.forEach((status, j) => {
        if (status.isNotGood()) this.#refused(group, batch[j]!.state.spec, status, "the server refused the new monitoring parameters; the old ones stay");
      });
    }
  }

  /** Deletes monitored items in calls that fit the server's limit; their values in flight are dropped. */
  async #deleteItems(group: GroupState, states: ItemState[]): Promise<void> {
    const ids = this.#release(states);
    const perCall = this.#perCall();
    for (let i = 0; i < ids.length; i += perCall) await deleteItems(this.#o.session, group.subscription.subscriptionId, ids.slice(i, i + perCall));
  }

  /** The items are gone for good: their handles may name others. Returns the ids the server had. */
  #release(states: ItemState[]): number[] {
    const ids: number[] = [];
    for (const s of states) {
      this.#handles.delete(s.handle);
      if (s.id === 0) continue;
      ids.push(s.id);
      s.id = 0;
      this.itemCount--;
    }
    return ids;
  }

  #refused(group: GroupState, spec: NodeSpec, status: StatusCode, what: string): void {
    const hint = filterHint(spec, status);
    this.#o.logger.error(
      { point: spec.key, ...(spec.browsePath !== undefined ? { browsePath: spec.browsePath } : { node: spec.node }), group: group.spec.name, status: status.name },
      hint ? `${what}: ${hint}` : what,
    );
  }

  // ---- events -------------------------------------------------------------------------------

  async #addEvents(group: GroupState, specs: readonly EventSpec[]): Promise<EventState[]> {
    const added: EventState[] = [];
    for (const spec of specs) {
      const state: EventState = { spec, monitored: null };
      group.events.set(spec.key, state);
      let prepared: PreparedEvent;
      try {
        prepared = prepareEvent(spec, this.#o.machine, this.#o.namespaceArray);
      } catch (err) {
        this.#o.logger.error({ event: spec.key, notifier: spec.notifier, eventType: spec.eventType }, `${(err as Error).message}; this event subscription is left out`);
        continue;
      }
      const mi = await group.subscription.monitor(prepared.itemToMonitor, prepared.parameters, TimestampsToReturn.Neither);
      if (mi.statusCode.isNotGood()) {
        this.#o.logger.error({ event: spec.key, notifier: spec.notifier, group: group.spec.name, status: mi.statusCode.name }, "the server refused this event subscription");
        continue;
      }
      const filterResult = mi.filterResult as { selectClauseResults?: StatusCode[] } | undefined;
      filterResult?.selectClauseResults?.slice(2).forEach((status, i) => {
        if (status.isNotGood()) this.#o.logger.warn({ event: spec.key, select: spec.select[i], status: status.name }, "the server cannot select this event field; it will be null");
      });
      state.monitored = mi;
      this.itemCount++;
      added.push(state);
      mi.on("changed", (fields: Variant[]) => {
        if (state.monitored !== mi) return;
        const message = prepared.toMessage(fields);
        if (!message) return;
        this.#pendingEvents.push(message);
        this.#withData.add(group.spec.name);
        this.#scheduleFlush();
      });
    }
    return added;
  }

  async #refreshConditions(group: GroupState, monitoredItemId: number | undefined): Promise<void> {
    const result = await this.#o.session.call(conditionRefreshRequest(group.subscription.subscriptionId, monitoredItemId)).catch((err: Error) => err);
    if (result instanceof Error || result.statusCode.isNotGood()) {
      const why = result instanceof Error ? result.message : result.statusCode.name;
      this.#o.logger.warn({ group: group.spec.name, status: why }, "ConditionRefresh failed; alarms that are already active show up at their next change");
    }
  }

  // ---- output -------------------------------------------------------------------------------

  /** node-opcua dispatches one publish response synchronously; flushing after it keeps its values together. */
  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      for (const group of this.#withData) this.#o.onGroupData?.(group);
      this.#withData.clear();
      const items = this.#pending;
      const events = this.#pendingEvents;
      this.#pending = [];
      this.#pendingEvents = [];
      if (items.length === 0 && events.length === 0) return;
      this.#o.sink.write(items.length > 0 ? [{ kind: "data", machine: this.#o.machine, items }, ...events] : events);
      this.#o.onData();
    });
  }

  #startHeartbeats(): void {
    if (this.#closed || this.#heartbeatTimer || this.#heartbeats.size === 0) return;
    this.#heartbeatTimer = setInterval(() => this.#beat(), HEARTBEAT_TICK_MS);
    this.#heartbeatTimer.unref();
  }

  #beat(): void {
    const session = this.#o.session as ClientSession & { hasBeenClosed?: () => boolean };
    // The owner may drop us without close(): a closed session ends the heartbeats too.
    if (this.#closed || session.hasBeenClosed?.()) return this.close();
    // While the channel is being repaired nothing is known about the values: no heartbeat.
    if (session.isReconnecting) return;
    const due = this.#heartbeats.due(Date.now());
    if (due.length === 0) return;
    this.#pending.push(...due);
    this.#scheduleFlush();
  }

  /** The groups a subscription serves (several when they share it), for reports by subscription id. */
  groupsOf(subscriptionId: number): string[] {
    return [...this.#groups.values()].filter((g) => g.subscription.subscriptionId === subscriptionId).map((g) => g.spec.name);
  }

  /** The data point and group a client handle names. */
  pointOf(handle: number): { point: string; group: string } | undefined {
    const state = this.#handles.get(handle);
    return state && { point: state.spec.key, group: state.group.spec.name };
  }

  #perCall(): number {
    return Math.min(this.#o.maxItemsPerCall || DEFAULT_ITEMS_PER_CALL, DEFAULT_ITEMS_PER_CALL * 5);
  }
}

export function keepAliveCount(publishingInterval: number): number {
  // A keep-alive about every 5 s at most, so a dead server is noticed quickly.
  return Math.max(2, Math.min(100, Math.ceil(5000 / publishingInterval)));
}

const TRIGGERS: Record<DataChangeTriggerName, DataChangeTrigger> = {
  status: DataChangeTrigger.Status,
  statusValue: DataChangeTrigger.StatusValue,
  statusValueTimestamp: DataChangeTrigger.StatusValueTimestamp,
};

/** The same value at the same time, as the cloud would see it (unit and key aside). */
function sameItem(a: Item, b: Item): boolean {
  return a.t === b.t && a.q === b.q && (a.v === b.v || JSON.stringify(a.v) === JSON.stringify(b.v));
}

function monitoringParameters(spec: NodeSpec): MonitoringParametersOptions {
  return { samplingInterval: spec.samplingInterval, queueSize: spec.queueSize, discardOldest: spec.discardOldest, filter: dataChangeFilter(spec) };
}

/** null when the defaults do (trigger StatusValue, no deadband): some servers support no filter at all. */
function dataChangeFilter(spec: NodeSpec): DataChangeFilter | null {
  const trigger = spec.dataChangeTrigger ?? "statusValue";
  const deadband = spec.deadband && spec.deadband.value > 0 ? spec.deadband : null;
  if (trigger === "statusValue" && !deadband) return null;
  return new DataChangeFilter({
    trigger: TRIGGERS[trigger],
    deadbandType: deadband ? (deadband.type === "absolute" ? DeadbandType.Absolute : DeadbandType.Percent) : DeadbandType.None,
    deadbandValue: deadband?.value ?? 0,
  });
}

const FILTER_STATUSES = new Set(["BadMonitoredItemFilterUnsupported", "BadMonitoredItemFilterInvalid", "BadFilterNotAllowed", "BadDeadbandFilterInvalid"]);

function filterHint(spec: NodeSpec, status: StatusCode): string | null {
  if (!FILTER_STATUSES.has(status.name)) return null;
  if (spec.deadband?.type === "percent") return "a percent deadband needs the node's EURange property on the server (AnalogItemType); use type absolute, or no deadband";
  if (spec.deadband) return "a deadband needs a numeric node";
  return "the server does not support this dataChangeTrigger here";
}

/** Splits items into calls of at most `perCall` that share their monitoring parameters. */
function batchesByParameters<T extends { state: ItemState }>(nodes: T[], perCall: number): T[][] {
  const byParams = new Map<string, T[]>();
  for (const n of nodes) {
    const k = monitoring(n.state.spec);
    const list = byParams.get(k) ?? [];
    list.push(n);
    byParams.set(k, list);
  }
  const out: T[][] = [];
  for (const list of byParams.values()) {
    for (let i = 0; i < list.length; i += perCall) out.push(list.slice(i, i + perCall));
  }
  return out;
}

/** Runs `task` on each element, two at a time; after an error starts no more, and rejects with it once the running ones have ended. */
async function inPairs<T>(elements: readonly T[], task: (e: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { err: unknown } | null = null;
  const worker = async () => {
    while (next < elements.length && !failure) {
      const e = elements[next++]!;
      try {
        await task(e);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all([worker(), worker()]);
  if (failure) throw (failure as { err: unknown }).err;
}
