import type { EventSpec, GroupSpec, NodeSpec } from "../types.ts";
import { subscriptionPriority } from "./priority.ts";

/** What changes within a group that exists before and after. */
export interface GroupChange {
  name: string;
  /** The group as it is after the change. */
  group: GroupSpec;
  /** The publishing interval changed: ModifySubscription. */
  publishingChanged: boolean;
  /** Monitored items to create: new keys, and keys whose address changed (after their delete). */
  add: NodeSpec[];
  /** Keys whose monitored items to delete: gone keys, and keys whose address changed. */
  remove: string[];
  /** Keys with new monitoring parameters (sampling, queue, filter): ModifyMonitoredItems. */
  modify: NodeSpec[];
  /** Keys whose change is ours alone (heartbeat, skipFirst, unit, scale, offset): no server call. */
  update: NodeSpec[];
  addEvents: EventSpec[];
  removeEvents: string[];
}

export interface MappingDiff {
  addGroups: GroupSpec[];
  removeGroups: string[];
  /** Only groups in which something changed. */
  changeGroups: GroupChange[];
  /** Data point and event keys of the machine: new, gone, and present before and after but different. */
  added: string[];
  removed: string[];
  changed: string[];
}

/**
 * The smallest set of operations that turns the subscriptions of `before` into those of
 * `after`. Groups are matched by name, data points and events by key. A data point whose
 * address (node, browse path, start node, index range) changed is deleted and created again:
 * OPC UA cannot change what a monitored item watches. Events are recreated on any change.
 */
export function diffMapping(before: readonly GroupSpec[], after: readonly GroupSpec[]): MappingDiff {
  const oldGroups = new Map(before.map((g) => [g.name, g]));
  const newGroups = new Map(after.map((g) => [g.name, g]));
  const diff: MappingDiff = { addGroups: [], removeGroups: [], changeGroups: [], added: [], removed: [], changed: [] };

  for (const g of before) if (!newGroups.has(g.name)) diff.removeGroups.push(g.name);
  for (const g of after) {
    const old = oldGroups.get(g.name);
    if (!old) {
      diff.addGroups.push(g);
      continue;
    }
    const change = diffGroup(old, g);
    if (change) diff.changeGroups.push(change);
  }

  // The key summary is machine-wide: a key that moved to another group is "changed".
  const oldKeys = keyFingerprints(before);
  const newKeys = keyFingerprints(after);
  for (const [key, print] of newKeys) {
    const was = oldKeys.get(key);
    if (was === undefined) diff.added.push(key);
    else if (was !== print) diff.changed.push(key);
  }
  for (const key of oldKeys.keys()) if (!newKeys.has(key)) diff.removed.push(key);
  return diff;
}

function diffGroup(old: GroupSpec, now: GroupSpec): GroupChange | null {
  const change: GroupChange = {
    name: now.name,
    group: now,
    publishingChanged: old.publishingInterval !== now.publishingInterval || subscriptionPriority(old) !== subscriptionPriority(now),
    add: [],
    remove: [],
    modify: [],
    update: [],
    addEvents: [],
    removeEvents: [],
  };
  const oldNodes = new Map(old.nodes.map((n) => [n.key, n]));
  const newNodes = new Set(now.nodes.map((n) => n.key));
  for (const n of old.nodes) if (!newNodes.has(n.key)) change.remove.push(n.key);
  for (const n of now.nodes) {
    const o = oldNodes.get(n.key);
    if (!o) change.add.push(n);
    else if (address(o) !== address(n)) {
      change.remove.push(n.key);
      change.add.push(n);
    } else if (monitoring(o) !== monitoring(n)) change.modify.push(n);
    else if (local(o) !== local(n)) change.update.push(n);
  }

  const oldEvents = new Map((old.events ?? []).map((e) => [e.key, e]));
  const newEvents = new Set((now.events ?? []).map((e) => e.key));
  for (const e of old.events ?? []) if (!newEvents.has(e.key)) change.removeEvents.push(e.key);
  for (const e of now.events ?? []) {
    const o = oldEvents.get(e.key);
    if (!o) change.addEvents.push(e);
    else if (eventPrint(o) !== eventPrint(e)) {
      change.removeEvents.push(e.key);
      change.addEvents.push(e);
    }
  }

  const any =
    change.publishingChanged ||
    change.add.length + change.remove.length + change.modify.length + change.update.length + change.addEvents.length + change.removeEvents.length > 0;
  return any ? change : null;
}

/** What the monitored item watches; a change needs a new item. */
function address(n: NodeSpec): string {
  return JSON.stringify([n.node ?? null, n.browsePath ?? null, n.browsePath ? (n.startNode ?? null) : null, n.indexRange ?? null]);
}

/** What ModifyMonitoredItems can change. */
export function monitoring(n: NodeSpec): string {
  const deadband = n.deadband && n.deadband.value > 0 ? [n.deadband.type, n.deadband.value] : null;
  return JSON.stringify([n.samplingInterval, n.queueSize, n.discardOldest, deadband, n.dataChangeTrigger ?? "statusValue"]);
}

/** What only the connector uses. */
function local(n: NodeSpec): string {
  return JSON.stringify([n.heartbeatSeconds ?? 0, n.skipFirst ?? false, n.unit ?? null, n.scale ?? 1, n.offset ?? 0]);
}

function eventPrint(e: EventSpec): string {
  return JSON.stringify([e.notifier, e.eventType, e.select, e.queueSize]);
}

function keyFingerprints(groups: readonly GroupSpec[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const g of groups) {
    for (const n of g.nodes) out.set(n.key, JSON.stringify([g.name, address(n), monitoring(n), local(n)]));
    for (const e of g.events ?? []) out.set(e.key, JSON.stringify([g.name, "event", eventPrint(e)]));
  }
  return out;
}
