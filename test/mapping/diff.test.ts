import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { diffMapping } from "../../src/opcua/subscription/mapping-diff.ts";
import type { EventSpec, GroupSpec, NodeSpec } from "../../src/opcua/types.ts";

const node = (key: string, extra: Partial<NodeSpec> = {}): NodeSpec => ({ key, node: `ns=2;s=${key}`, samplingInterval: 100, queueSize: 10, discardOldest: true, ...extra });
const alarm: EventSpec = { key: "alarm", notifier: "i=2253", eventType: "i=2041", select: ["Message"], queueSize: 1000 };
const group = (name: string, nodes: NodeSpec[], extra: Partial<GroupSpec> = {}): GroupSpec => ({ name, publishingInterval: 100, nodes, ...extra });

describe("mapping diff", () => {
  it("no change: nothing to do", () => {
    const g = [group("a", [node("x"), node("y")], { events: [alarm] })];
    expect(diffMapping(g, structuredClone(g))).toEqual({ addGroups: [], removeGroups: [], changeGroups: [], added: [], removed: [], changed: [] });
  });

  it("sorts each node change into the cheapest operation", () => {
    const before = [group("a", [node("keep"), node("gone"), node("sampling"), node("filter"), node("moved"), node("local"), node("range")])];
    const after = [
      group("a", [
        node("keep"),
        node("sampling", { samplingInterval: 500 }),
        node("filter", { deadband: { type: "absolute", value: 1 }, dataChangeTrigger: "statusValueTimestamp" }),
        node("moved", { node: "ns=2;s=elsewhere" }),
        node("local", { heartbeatSeconds: 5, scale: 2, unit: "rpm", skipFirst: true }),
        node("range", { indexRange: "0:1" }),
        node("new"),
      ]),
    ];
    const d = diffMapping(before, after);
    expect(d.addGroups).toEqual([]);
    expect(d.removeGroups).toEqual([]);
    expect(d.changeGroups).toHaveLength(1);
    const c = d.changeGroups[0]!;
    expect(c.publishingChanged).toBe(false);
    expect(c.remove.sort()).toEqual(["gone", "moved", "range"]);
    expect(c.add.map((n) => n.key).sort()).toEqual(["moved", "new", "range"]);
    expect(c.modify.map((n) => n.key).sort()).toEqual(["filter", "sampling"]);
    expect(c.update.map((n) => n.key)).toEqual(["local"]);
    expect(d.added).toEqual(["new"]);
    expect(d.removed).toEqual(["gone"]);
    expect(d.changed.sort()).toEqual(["filter", "local", "moved", "range", "sampling"]);
  });

  it("defaults count as the same setting: statusValue trigger, deadband value 0, scale 1", () => {
    const before = [group("a", [node("x")])];
    const after = [group("a", [node("x", { dataChangeTrigger: "statusValue", deadband: { type: "percent", value: 0 }, scale: 1, offset: 0, heartbeatSeconds: 0, skipFirst: false })])];
    expect(diffMapping(before, after).changeGroups).toEqual([]);
  });

  it("groups: added, removed, new publishing interval; a key moving between groups is changed", () => {
    const before = [group("a", [node("x"), node("m")]), group("old", [node("o")])];
    const after = [group("a", [node("x")], { publishingInterval: 1000 }), group("b", [node("m")], { events: [alarm] })];
    const d = diffMapping(before, after);
    expect(d.removeGroups).toEqual(["old"]);
    expect(d.addGroups.map((g) => g.name)).toEqual(["b"]);
    expect(d.changeGroups.map((c) => [c.name, c.publishingChanged, c.remove])).toEqual([["a", true, ["m"]]]);
    expect(d.added).toEqual(["alarm"]);
    expect(d.removed).toEqual(["o"]);
    expect(d.changed).toEqual(["m"]);
  });

  it("events are recreated on any change", () => {
    const before = [group("a", [], { events: [alarm, { ...alarm, key: "audit" }] })];
    const after = [group("a", [], { events: [{ ...alarm, select: ["Message", "Severity"] }] })];
    const c = diffMapping(before, after).changeGroups[0]!;
    expect(c.removeEvents.sort()).toEqual(["alarm", "audit"]);
    expect(c.addEvents.map((e) => e.key)).toEqual(["alarm"]);
  });

  it("applying the operations to `before` gives `after` (random mappings)", () => {
    const keys = ["k0", "k1", "k2", "k3", "k4", "k5"];
    const arbNode = fc.record({
      key: fc.constantFrom(...keys),
      node: fc.constantFrom("ns=2;s=A", "ns=2;s=B"),
      samplingInterval: fc.constantFrom(0, 100),
      queueSize: fc.constantFrom(1, 10),
      discardOldest: fc.boolean(),
      heartbeatSeconds: fc.constantFrom(0, 5),
    });
    const arbGroups = fc
      .array(fc.record({ name: fc.constantFrom("g0", "g1", "g2"), publishingInterval: fc.constantFrom(100, 500), nodes: fc.array(arbNode, { maxLength: 4 }) }), { maxLength: 3 })
      .map((gs): GroupSpec[] => {
        // unique group names and unique keys machine-wide, as the schema guarantees
        const seenKeys = new Set<string>();
        const seenGroups = new Set<string>();
        return gs
          .filter((g) => !seenGroups.has(g.name) && seenGroups.add(g.name))
          .map((g) => ({ ...g, nodes: g.nodes.filter((n) => !seenKeys.has(n.key) && seenKeys.add(n.key)) }));
      });
    fc.assert(
      fc.property(arbGroups, arbGroups, (before, after) => {
        const d = diffMapping(before, after);
        // replay the operations on a model: group name -> key -> node
        const model = new Map<string, { pi: number; nodes: Map<string, NodeSpec> }>(before.map((g) => [g.name, { pi: g.publishingInterval, nodes: new Map(g.nodes.map((n) => [n.key, n])) }]));
        for (const name of d.removeGroups) model.delete(name);
        for (const c of d.changeGroups) {
          const m = model.get(c.name)!;
          if (c.publishingChanged) m.pi = c.group.publishingInterval;
          for (const k of c.remove) m.nodes.delete(k);
          for (const n of [...c.modify, ...c.update]) {
            expect(m.nodes.has(n.key)).toBe(true);
            m.nodes.set(n.key, n);
          }
          for (const n of c.add) {
            expect(m.nodes.has(n.key)).toBe(false);
            m.nodes.set(n.key, n);
          }
        }
        for (const g of d.addGroups) model.set(g.name, { pi: g.publishingInterval, nodes: new Map(g.nodes.map((n) => [n.key, n])) });
        const expected = new Map(after.map((g) => [g.name, { pi: g.publishingInterval, nodes: new Map(g.nodes.map((n) => [n.key, n])) }]));
        expect(model).toEqual(expected);
        // untouched keys are in no list
        const touched = new Set([...d.added, ...d.removed, ...d.changed]);
        for (const g of after) for (const n of g.nodes) {
          const old = before.flatMap((b) => b.nodes.map((o) => ({ g: b.name, o }))).find((x) => x.o.key === n.key);
          if (old && old.g === g.name && JSON.stringify(old.o) === JSON.stringify(n)) expect(touched.has(n.key)).toBe(false);
        }
      }),
      { numRuns: 300, seed: 42 },
    );
  });
});
