import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { itemCount, type Message } from "../../src/message.ts";
import { halve } from "../../src/uplink/batches.ts";

const item = (n: number) => ({ key: `k${n}`, v: n, q: 0, t: "2026-01-01T00:00:00.000Z" });
const data = (machine: string, n: number): Message => ({ kind: "data", machine, items: Array.from({ length: n }, (_, i) => item(i)) });
const status: Message = { kind: "status", machine: "m", state: "online", t: "2026-01-01T00:00:00.000Z" };

describe("halve", () => {
  it("cuts several messages between messages, balancing items", () => {
    const [a, b] = halve([data("m1", 10), data("m2", 1), data("m3", 1), data("m4", 8)])!;
    expect(a.map((m) => m.machine)).toEqual(["m1"]);
    expect(b.map((m) => m.machine)).toEqual(["m2", "m3", "m4"]);
  });

  it("cuts a single data message by its items", () => {
    const [a, b] = halve([data("m1", 5)])!;
    expect(a).toEqual([{ kind: "data", machine: "m1", items: [item(0), item(1), item(2)] }]);
    expect(b).toEqual([{ kind: "data", machine: "m1", items: [item(3), item(4)] }]);
  });

  it("cannot cut one item, one event or one status", () => {
    expect(halve([data("m1", 1)])).toBeNull();
    expect(halve([status])).toBeNull();
  });

  it("keeps every item, in order, in two non-empty parts", () => {
    const message = fc.oneof(
      fc.integer({ min: 1, max: 20 }).map((n) => data("m", n)),
      fc.constant(status),
    );
    fc.assert(
      fc.property(fc.array(message, { minLength: 1, maxLength: 12 }), (messages) => {
        const parts = halve(messages);
        if (parts === null) return itemCount(messages) === 1;
        const [a, b] = parts;
        const flat = (ms: Message[]) => ms.flatMap((m) => (m.kind === "data" ? m.items.map((i) => `${m.machine}/${i.key}`) : [m.kind]));
        return a.length > 0 && b.length > 0 && JSON.stringify([...flat(a), ...flat(b)]) === JSON.stringify(flat(messages));
      }),
    );
  });
});
