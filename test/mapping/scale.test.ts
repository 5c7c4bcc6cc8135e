import { DataType } from "node-opcua-client";
import { describe, expect, it } from "vitest";
import { scaleValue } from "../../src/opcua/subscription/scale.ts";

describe("scale and offset", () => {
  it("v × scale + offset for numbers, elementwise for arrays, Int64 strings included", () => {
    expect(scaleValue(20, DataType.Double, 0.5, -1)).toEqual({ v: 9, ok: true });
    expect(scaleValue([1, 2, null], DataType.Int32, 10, 1)).toEqual({ v: [11, 21, null], ok: true });
    expect(scaleValue("9007199254740993", DataType.UInt64, 1e-3, 0)).toEqual({ v: 9007199254740.993, ok: true });
    expect(scaleValue(null, DataType.Double, 2, 0)).toEqual({ v: null, ok: true });
  });

  it("keeps the string form for results that are not finite", () => {
    expect(scaleValue("NaN", DataType.Double, 2, 1)).toEqual({ v: "NaN", ok: true });
    expect(scaleValue("Infinity", DataType.Float, -1, 0)).toEqual({ v: "-Infinity", ok: true });
  });

  it("passes values that are not numeric on unchanged, and says so", () => {
    expect(scaleValue("abc", DataType.String, 2, 0)).toEqual({ v: "abc", ok: false });
    expect(scaleValue(true, DataType.Boolean, 2, 0)).toEqual({ v: true, ok: false });
  });
});
