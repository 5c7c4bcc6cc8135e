import {
  AttributeIds,
  TimestampsToReturn,
  type ClientMonitoredItemBase,
  type ClientSession,
  type ClientSubscription,
  type DataValue,
  type ReadValueIdOptions,
} from "node-opcua-client";
import type { Logger } from "../log.ts";
import type { Item, MessageSink } from "../types.ts";
import { dataValueTime, encodeVariant } from "./encode.ts";
import { resolveMappedNodeId } from "./nodes.ts";
import type { GroupSpec, NodeSpec } from "./types.ts";

/** Used when the server does not state MaxMonitoredItemsPerCall: small enough for any server we met. */
const DEFAULT_ITEMS_PER_CALL = 1000;

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
  onFailure: (reason: string) => void;
  /**
   * The last value delivered per key, kept by the session across reconnects: the first
   * notification of a new monitored item repeats the server's current value, and a value
   * that has not changed since the previous connection must not reach the cloud twice.
   */
  lastDelivered: Map<string, string>;
}

/**
 * The subscriptions of one session: one per mapping group, monitored items created
 * in batches that fit the server's limit. Values of one publish response reach the
 * sink together, as one data message.
 */
export class SubscriptionSet {
  #o: SubscriptionSetOptions;
  #pending: Item[] = [];
  #flushScheduled = false;
  itemCount = 0;

  constructor(options: SubscriptionSetOptions) {
    this.#o = options;
  }

  async create(): Promise<void> {
    for (const group of this.#o.groups) await this.#createGroup(group);
  }

  async #createGroup(group: GroupSpec): Promise<void> {
    const { session, logger } = this.#o;
    const subscription = await session.createSubscription2({
      requestedPublishingInterval: group.publishingInterval,
      requestedMaxKeepAliveCount: keepAliveCount(group.publishingInterval),
      requestedLifetimeCount: 3 * keepAliveCount(group.publishingInterval) * 10,
      // 0 = no limit: many small publish responses cost the server CPU and lose values under load.
      maxNotificationsPerPublish: 0,
      publishingEnabled: true,
      priority: 10,
    });
    subscription.on("status_changed", (status) => {
      if (status.isNotGood()) this.#o.onFailure(`subscription '${group.name}' ended by the server: ${status.name}`);
    });
    subscription.on("internal_error", (err) => this.#o.onFailure(`subscription '${group.name}' failed: ${err.message}`));

    const resolved: { spec: NodeSpec; item: ReadValueIdOptions }[] = [];
    for (const spec of group.nodes) {
      try {
        resolved.push({ spec, item: { nodeId: resolveMappedNodeId(spec.node, this.#o.namespaceArray), attributeId: AttributeIds.Value } });
      } catch (err) {
        logger.error({ key: spec.key, node: spec.node }, (err as Error).message);
      }
    }
    const perCall = Math.min(this.#o.maxItemsPerCall || DEFAULT_ITEMS_PER_CALL, DEFAULT_ITEMS_PER_CALL * 5);
    for (const batch of batchesByParameters(resolved, perCall)) {
      await this.#monitor(subscription, group, batch);
    }
  }

  async #monitor(subscription: ClientSubscription, group: GroupSpec, batch: { spec: NodeSpec; item: ReadValueIdOptions }[]): Promise<void> {
    const first = batch[0]!.spec;
    const monitored = await subscription.monitorItems(
      batch.map((b) => b.item),
      { samplingInterval: first.samplingInterval, queueSize: first.queueSize, discardOldest: first.discardOldest },
      TimestampsToReturn.Both,
    );
    monitored.monitoredItems.forEach((mi: ClientMonitoredItemBase, i: number) => {
      const spec = batch[i]!.spec;
      if (mi.statusCode.isNotGood()) {
        this.#o.logger.error({ key: spec.key, node: spec.node, group: group.name, status: mi.statusCode.name }, "the server refused to monitor this node");
      } else {
        this.itemCount++;
      }
    });
    const seen = new Uint8Array(batch.length);
    monitored.on("changed", (_mi: ClientMonitoredItemBase, dataValue: DataValue, index: number) => {
      const spec = batch[index]!.spec;
      const item: Item = { key: spec.key, v: encodeVariant(dataValue.value), q: dataValue.statusCode.value, t: dataValueTime(dataValue) };
      const fingerprint = `${item.t}|${item.q}|${JSON.stringify(item.v)}`;
      if (seen[index] === 0) {
        seen[index] = 1;
        if (this.#o.lastDelivered.get(spec.key) === fingerprint) return;
      }
      this.#o.lastDelivered.set(spec.key, fingerprint);
      this.#pending.push(item);
      this.#scheduleFlush();
    });
  }

  /** node-opcua dispatches one publish response synchronously; flushing after it keeps its values together. */
  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      const items = this.#pending;
      this.#pending = [];
      if (items.length === 0) return;
      this.#o.sink.write([{ kind: "data", machine: this.#o.machine, items }]);
      this.#o.onData();
    });
  }
}

export function keepAliveCount(publishingInterval: number): number {
  // A keep-alive about every 5 s at most, so a dead server is noticed quickly.
  return Math.max(2, Math.min(100, Math.ceil(5000 / publishingInterval)));
}

/** Splits nodes into calls of at most `perCall` items that share their monitoring parameters. */
function batchesByParameters<T extends { spec: NodeSpec }>(nodes: T[], perCall: number): T[][] {
  const byParams = new Map<string, T[]>();
  for (const n of nodes) {
    const k = `${n.spec.samplingInterval}/${n.spec.queueSize}/${n.spec.discardOldest}`;
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
