import {
  AttributeIds,
  ContentFilter,
  ContentFilterElement,
  DataType,
  EventFilter,
  FilterOperator,
  LiteralOperand,
  SimpleAttributeOperand,
  Variant,
  type MonitoringParametersOptions,
  type NodeId,
  type ReadValueIdOptions,
} from "node-opcua-client";
import type { EventMessage } from "../../message.ts";
import { namespaceIndex, parseSelectPath } from "../../config/browse-path.ts";
import { encodeVariant } from "./encode.ts";
import { resolveMappedNodeId } from "./nodes.ts";
import type { EventSpec } from "../types.ts";

export const SERVER_OBJECT = "i=2253";
export const BASE_EVENT_TYPE = "i=2041";
/** ConditionType and its ConditionRefresh / ConditionRefresh2 methods (OPC UA Part 9 §5.5.7-8). */
const CONDITION_TYPE = "i=2782";
const CONDITION_REFRESH = "i=3875";
const CONDITION_REFRESH2 = "i=12912";
// RefreshStartEventType and RefreshEndEventType bracket a refresh; they carry no alarm.
const REFRESH_MARKERS = new Set(["ns=0;i=2787", "ns=0;i=2788"]);

/** Fields we always select, ahead of the user's: the type (to drop refresh markers) and the time. */
const INTERNAL = ["EventType", "Time"];

export interface PreparedEvent {
  itemToMonitor: ReadValueIdOptions;
  parameters: MonitoringParametersOptions;
  /** One notification's event fields as a message; null for the refresh markers. */
  toMessage(fields: readonly Variant[]): EventMessage | null;
}

/**
 * The monitored item of an event subscription: an EventFilter whose select clauses are the
 * mapping's browse paths (plus EventType and Time, which we need), and whose where clause
 * keeps events of the configured type or a subtype. Throws a KerfError for a namespace URI
 * or node id the server does not know.
 */
export function prepareEvent(spec: EventSpec, machine: string, namespaceArray: readonly string[]): PreparedEvent {
  const notifier = resolveMappedNodeId(spec.notifier, namespaceArray);
  const eventType = resolveMappedNodeId(spec.eventType, namespaceArray);
  const selects = [...INTERNAL, ...spec.select];
  const filter = new EventFilter({
    selectClauses: selects.map((s) => selectClause(s, namespaceArray)),
    whereClause: eventType.toString() === "ns=0;i=2041" ? undefined : ofType(eventType),
  });
  return {
    itemToMonitor: { nodeId: notifier, attributeId: AttributeIds.EventNotifier },
    // sampling 0: events are not sampled; the queue holds a burst (e.g. a ConditionRefresh) between publishes
    parameters: { samplingInterval: 0, queueSize: spec.queueSize, discardOldest: true, filter },
    toMessage(values) {
      const type = values[0]?.value as NodeId | null | undefined;
      if (type && REFRESH_MARKERS.has(type.toString())) return null;
      const time = values[1]?.value;
      const fields: Record<string, unknown> = {};
      spec.select.forEach((name, i) => {
        // a key like "__proto__" must stay a plain field, not a prototype change
        Object.defineProperty(fields, name, { value: encodeVariant(values[INTERNAL.length + i]), enumerable: true, writable: true, configurable: true });
      });
      const t = time instanceof Date && !Number.isNaN(time.getTime()) ? time : new Date();
      return { kind: "event", machine, key: spec.key, t: t.toISOString(), fields };
    },
  };
}

function selectClause(path: string, namespaceArray: readonly string[]): SimpleAttributeOperand {
  if (path === "ConditionId") {
    // Not a component of ConditionType: the condition's own NodeId (Part 9 Table 10).
    return new SimpleAttributeOperand({ typeDefinitionId: CONDITION_TYPE, browsePath: null, attributeId: AttributeIds.NodeId });
  }
  const browsePath = parseSelectPath(path).map((e) => ({ namespaceIndex: namespaceIndex(e, namespaceArray), name: e.name }));
  // BaseEventType: the server evaluates the path against whatever type the event has (Part 4 §7.4.4.5).
  return new SimpleAttributeOperand({ typeDefinitionId: BASE_EVENT_TYPE, browsePath, attributeId: AttributeIds.Value });
}

function ofType(eventType: NodeId): ContentFilter {
  return new ContentFilter({
    elements: [
      new ContentFilterElement({
        filterOperator: FilterOperator.OfType,
        filterOperands: [new LiteralOperand({ value: new Variant({ dataType: DataType.NodeId, value: eventType }) })],
      }),
    ],
  });
}

/**
 * Asks the server to report the current state of every retained condition (active alarms) to
 * one subscription, or with `monitoredItemId` to one event item only (ConditionRefresh2, for
 * an item added to a running subscription: the others already know their alarms).
 */
export function conditionRefreshRequest(subscriptionId: number, monitoredItemId?: number) {
  const args = [new Variant({ dataType: DataType.UInt32, value: subscriptionId })];
  if (monitoredItemId !== undefined) args.push(new Variant({ dataType: DataType.UInt32, value: monitoredItemId }));
  return { objectId: CONDITION_TYPE, methodId: monitoredItemId === undefined ? CONDITION_REFRESH : CONDITION_REFRESH2, inputArguments: args };
}
