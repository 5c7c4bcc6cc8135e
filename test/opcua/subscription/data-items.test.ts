import { describe, expect, it } from "vitest";
import { HandleTable } from "../../../src/opcua/subscription/data-items.ts";

describe("client handles of data items", () => {
  it("start far above node-opcua's own (1, 2, … per subscription) and are never shared", () => {
    const table = new HandleTable<string>();
    const a = table.add("a");
    const b = table.add("b");
    expect(a).toBeGreaterThanOrEqual(0x4000_0000);
    expect(b).not.toBe(a);
    expect(table.get(a)).toBe("a");
    table.delete(a);
    expect(table.get(a)).toBeUndefined();
    // a deleted item's handle is not given out again at once: its values may still be in flight
    expect(table.add("c")).not.toBe(a);
  });

  it("wrap around past the end, skipping handles still in use", () => {
    const table = new HandleTable<string>(10, 13);
    const first = [table.add("a"), table.add("b"), table.add("c"), table.add("d")];
    expect(first).toEqual([10, 11, 12, 13]);
    expect(() => table.add("e")).toThrow(/no free client handle/);
    expect(() => table.add("e")).toThrow(expect.objectContaining({ name: "KerfError", code: "INTERNAL" }));
    table.delete(11);
    expect(table.add("e")).toBe(11);
    expect(table.get(11)).toBe("e");
    expect(table.size).toBe(4);
  });
});
