import { AttributeIds } from "node-opcua-client";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { resolveMappedNodeId } from "../../src/opcua/subscription/nodes.ts";
import { DUST_ALARM_SEVERITY } from "../../src/simulator/alarms.ts";
import { SIM_NODES } from "../../src/simulator/nodes.ts";
import { startBench, subscribe, waitFor, type Bench, type Harness } from "./helpers.ts";

// The dust extraction alarm is active from 50 % to 75 % of each period: 3.0 s to 4.5 s here.
const ALARM_PERIOD_MS = 6000;
const ALARM_CONDITION_TYPE = "i=2915";
const SYSTEM_EVENT_TYPE = "i=2130";
const SELECT = ["EventId", "Message", "Severity", "SourceName", "Time", "ActiveState/Id", "ConditionId", "ConditionName", "NoSuchField"];

let bench: Bench;
let h: Harness | undefined;
beforeAll(async () => {
  bench = await startBench({ alarmPeriodMs: ALARM_PERIOD_MS });
});
afterEach(async () => {
  await h?.dispose();
  h = undefined;
});
afterAll(async () => {
  await bench?.stop();
});

async function airflowOk(): Promise<boolean> {
  const dv = await bench.session.read({ nodeId: resolveMappedNodeId(SIM_NODES.dustAirflowOk, bench.namespaceArray), attributeId: AttributeIds.Value });
  return dv.value.value as boolean;
}

describe("events and alarms", () => {
  it("an alarm already active when subscribing arrives through ConditionRefresh, then its return to normal", async () => {
    await waitFor("the alarm to become active", async () => (await airflowOk()) === false, 15_000, 50);
    const subscribedAt = Date.now();
    h = await subscribe(bench, [
      {
        name: "alarms",
        publishingInterval: 100,
        nodes: [],
        events: [
          { key: "alarm", notifier: "i=2253", eventType: ALARM_CONDITION_TYPE, select: SELECT, queueSize: 100 },
          // the alarm is no SystemEventType: the where clause must keep it out (and the refresh markers are dropped)
          { key: "system", notifier: "i=2253", eventType: SYSTEM_EVENT_TYPE, select: ["Message"], queueSize: 100 },
        ],
      },
    ]);
    const [refreshed] = await waitFor("the active alarm", () => (h!.events("alarm").length > 0 ? h!.events("alarm") : undefined), 3_000, 20);
    // still active: this event came from the refresh, not from a transition
    expect(await airflowOk()).toBe(false);
    expect(refreshed).toMatchObject({ kind: "event", machine: "saw", key: "alarm" });
    expect(Date.parse(refreshed!.t)).toBeLessThan(subscribedAt);
    const f = refreshed!.fields;
    expect(Object.keys(f)).toEqual(SELECT);
    expect(f.Severity).toBe(DUST_ALARM_SEVERITY);
    expect(f["ActiveState/Id"]).toBe(true);
    expect(f.Message).toMatch(/Dust extraction airflow low/);
    expect(f.ConditionId).toBe(resolveMappedNodeId(SIM_NODES.dustAlarm, bench.namespaceArray).toString());
    expect(f.ConditionName).toBe("DustExtractionLow");
    expect(f.Time).toBe(refreshed!.t);
    expect(typeof f.EventId).toBe("string"); // a ByteString, base64
    expect(f.NoSuchField).toBeNull();
    // the server says which select clause it cannot serve; that is logged once, at subscribe time
    const unknown = h.lines.filter((l) => l.select === "NoSuchField");
    expect(unknown).toHaveLength(1);
    expect(unknown[0]).toMatchObject({ level: 40, event: "alarm", status: "BadNoMatch" });

    const cleared = await waitFor("the return to normal", () => h!.events("alarm").find((e) => e.fields["ActiveState/Id"] === false), 5_000, 50);
    expect(cleared.fields.Severity).toBe(100);
    expect(Date.parse(cleared.t)).toBeGreaterThan(Date.parse(refreshed!.t));
    expect(h.events("system")).toEqual([]);
    expect(h.set.itemCount).toBe(2);
  });

  it("an event item added by apply() gets the active alarm through ConditionRefresh2, without repeats for the others", async () => {
    await waitFor("the alarm to be inactive", async () => (await airflowOk()) === true, 15_000, 50);
    h = await subscribe(bench, [{ name: "alarms", publishingInterval: 100, nodes: [], events: [{ key: "first", notifier: "i=2253", eventType: ALARM_CONDITION_TYPE, select: ["ActiveState/Id"], queueSize: 100 }] }]);
    await waitFor("the alarm to become active", async () => (await airflowOk()) === false, 15_000, 50);
    await waitFor("the live activation", () => h!.events("first").length === 1, 3_000, 20);
    const result = await h.set.apply([
      {
        name: "alarms",
        publishingInterval: 100,
        nodes: [],
        events: [
          { key: "first", notifier: "i=2253", eventType: ALARM_CONDITION_TYPE, select: ["ActiveState/Id"], queueSize: 100 },
          { key: "second", notifier: "i=2253", eventType: ALARM_CONDITION_TYPE, select: ["ActiveState/Id", "Severity"], queueSize: 100 },
        ],
      },
    ]);
    expect(result).toEqual({ added: ["second"], removed: [], changed: [] });
    const [second] = await waitFor("the refreshed alarm", () => (h!.events("second").length > 0 ? h!.events("second") : undefined), 3_000, 20);
    expect(await airflowOk()).toBe(false);
    expect(second!.fields).toEqual({ "ActiveState/Id": true, Severity: DUST_ALARM_SEVERITY });
    // ConditionRefresh2 named only the new item: "first" saw the activation once
    expect(h.events("first")).toHaveLength(1);
  });
});
