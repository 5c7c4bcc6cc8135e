import { DataValue } from "node-opcua-client";
import { describe, expect, it } from "vitest";
import { dataValueTime } from "../../../src/opcua/subscription/encode.ts";

describe("dataValueTime", () => {
  it("formats each value's own timestamp, also when timestamps interleave or repeat across many", () => {
    const times = Array.from({ length: 600 }, (_, i) => 1_796_491_133_000 + (i % 3) * 1000 + Math.floor(i / 3));
    for (const ms of [...times, ...times.reverse()]) expect(dataValueTime(new DataValue({ sourceTimestamp: new Date(ms) }))).toBe(new Date(ms).toISOString());
  });

  it("uses the server timestamp without a source timestamp, and the connector's clock without either", () => {
    expect(dataValueTime(new DataValue({ serverTimestamp: new Date(5) }))).toBe("1970-01-01T00:00:00.005Z");
    const before = Date.now();
    const t = Date.parse(dataValueTime(new DataValue({})));
    expect(t).toBeGreaterThanOrEqual(before);
  });
});
