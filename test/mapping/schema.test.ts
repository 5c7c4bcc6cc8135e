import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { groupSpecs } from "../../src/agent/specs.ts";
import { GOOD_CONFIG, lines, load, loadError, tempDir, type TempDir } from "../config/helpers.ts";

let t: TempDir;
beforeEach(async () => {
  t = await tempDir();
});
afterEach(async () => {
  await t.cleanup();
});

describe("mapping features in the schema", () => {
  it("resolves node settings against the group and leaves unset ones to the OPC UA layer", async () => {
    const loaded = await load(
      t,
      GOOD_CONFIG,
      `machines:
  saw-1:
    groups:
      - name: g
        deadband: { type: absolute, value: 2 }
        dataChangeTrigger: statusValueTimestamp
        heartbeatSeconds: 10
        skipFirst: true
        priority: 7
        nodes:
          - key: a
            node: "i=1"
          - key: b
            browsePath: "/2:Machine.<nsu=urn:x>Speed"
            startNode: "i=2253"
            deadband: { type: percent, value: 5 }
            dataChangeTrigger: status
            heartbeatSeconds: 0
            skipFirst: false
            indexRange: "0:3"
            unit: rpm
            scale: 0.1
            offset: -40
        events:
          - key: alarm
          - key: custom
            notifier: "nsu=urn:kerf:simulator;s=Machine"
            eventType: "i=2915"
            select: [Message, ActiveState/Id, "<nsu=urn:x>Extra"]
            queueSize: 50
`,
    );
    const [g] = groupSpecs(loaded.mapping.machines["saw-1"]!.groups);
    expect(g!.priority).toBe(7);
    expect(g!.nodes[0]).toMatchObject({ key: "a", deadband: { type: "absolute", value: 2 }, dataChangeTrigger: "statusValueTimestamp", heartbeatSeconds: 10, skipFirst: true });
    expect(g!.nodes[1]).toMatchObject({
      key: "b",
      browsePath: "/2:Machine.<nsu=urn:x>Speed",
      startNode: "i=2253",
      deadband: { type: "percent", value: 5 },
      dataChangeTrigger: "status",
      heartbeatSeconds: 0,
      skipFirst: false,
      indexRange: "0:3",
      unit: "rpm",
      scale: 0.1,
      offset: -40,
    });
    expect(g!.events).toEqual([
      { key: "alarm", notifier: "i=2253", eventType: "i=2041", select: ["EventId", "EventType", "SourceName", "Time", "Message", "Severity"], queueSize: 1000 },
      { key: "custom", notifier: "nsu=urn:kerf:simulator;s=Machine", eventType: "i=2915", select: ["Message", "ActiveState/Id", "<nsu=urn:x>Extra"], queueSize: 50 },
    ]);
  });

  it("reports every problem of the new fields with file:line:col", async () => {
    const err = await loadError(
      t,
      GOOD_CONFIG,
      `machines:
  saw-1:
    groups:
      - name: g
        deadband: { type: relative, value: -1 }
        dataChangeTrigger: always
        heartbeatSeconds: -1
        nodes:
          - key: a
            node: "i=1"
            browsePath: "/Objects"
          - key: b
            startNode: "i=85"
          - key: c
            browsePath: "Machine/Speed"
            indexRange: "3:1"
            deadband: { type: percent, value: 150 }
            scale: "2"
        events:
          - key: a
            select: [Message, Message, "/<HasComponent>X"]
      - name: empty
        priority: 256
`,
    );
    expect(lines(err, t.dir)).toEqual([
      `mapping.yaml:5:27: machines.saw-1.groups[0].deadband.type: not an allowed value (found "relative"; expected one of absolute, percent)`,
      `mapping.yaml:5:44: machines.saw-1.groups[0].deadband.value: too small (found -1; expected ≥ 0)`,
      `mapping.yaml:6:28: machines.saw-1.groups[0].dataChangeTrigger: not an allowed value (found "always"; expected one of status, statusValue, statusValueTimestamp)`,
      `mapping.yaml:7:27: machines.saw-1.groups[0].heartbeatSeconds: too small (found -1; expected ≥ 0)`,
      `mapping.yaml:11:25: machines.saw-1.groups[0].nodes[0].browsePath: two addresses (found both node and browsePath; expected exactly one of them)`,
      `mapping.yaml:12:13: machines.saw-1.groups[0].nodes[1]: a data point needs an address (found neither node nor browsePath; expected exactly one of them)`,
      `mapping.yaml:13:24: machines.saw-1.groups[0].nodes[1].startNode: startNode without browsePath (found startNode only; expected it together with browsePath)`,
      `mapping.yaml:15:25: machines.saw-1.groups[0].nodes[2].browsePath: browse path "Machine/Speed": found "M" at position 1 (expected '/' or '.' before each element: elements like /2:Name, .Name or /<nsu=urn:example>Name)`,
      `mapping.yaml:16:25: machines.saw-1.groups[0].nodes[2].indexRange: not an index range (found "3:1"; expected an index "3" or range "0:3" (lower < upper), one per dimension separated by ',' (e.g. "0:1,2:4"))`,
      `mapping.yaml:17:47: machines.saw-1.groups[0].nodes[2].deadband.value: a percent deadband is at most 100 (found 150; expected 0..100)`,
      `mapping.yaml:18:20: machines.saw-1.groups[0].nodes[2].scale: wrong type (found "2"; expected a number)`,
      `mapping.yaml:20:18: machines.saw-1.groups[0].events[0].key: duplicate event key (found "a", already used by groups[0].nodes[0]; expected each key once per machine)`,
      `mapping.yaml:21:31: machines.saw-1.groups[0].events[0].select[1]: duplicate select field (found "Message" twice; expected each field once)`,
      `mapping.yaml:21:40: machines.saw-1.groups[0].events[0].select[2]: browse path "/<HasComponent>X": found <HasComponent> (expected <nsu=<namespace uri>> before a name; reference types are not supported, use '/' or '.')`,
      `mapping.yaml:22:9: machines.saw-1.groups[1]: an empty group (found no nodes and no events; expected at least one of them)`,
      `mapping.yaml:23:19: machines.saw-1.groups[1].priority: too large (found 256; expected ≤ 255)`,
    ]);
  });
});
