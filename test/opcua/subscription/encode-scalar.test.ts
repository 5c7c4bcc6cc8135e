import fc from "fast-check";
import { DataType, DataValue, StatusCodes, Variant, VariantArrayType } from "node-opcua-client";
import { describe, expect, it } from "vitest";
import { silentLogger } from "../../../src/log.ts";
import { encodeBounded, ValueEncoder } from "../../../src/opcua/subscription/encode.ts";

const SCALAR_TYPES = [DataType.Boolean, DataType.SByte, DataType.Byte, DataType.Int16, DataType.UInt16, DataType.Int32, DataType.UInt32, DataType.Float, DataType.Double, DataType.Int64, DataType.UInt64, DataType.String, DataType.StatusCode];

describe("ValueEncoder's shortcut for plain numbers and booleans", () => {
  it("gives exactly what the bounded walk gives, for any scalar of any type", () => {
    const encoder = new ValueEncoder({ logger: silentLogger() });
    const value = fc.oneof(fc.double(), fc.integer(), fc.boolean(), fc.constantFrom(Number.NaN, Infinity, -Infinity, -0), fc.string(), fc.constant(null));
    fc.assert(
      fc.property(fc.constantFrom(...SCALAR_TYPES), value, fc.constantFrom(StatusCodes.Good, StatusCodes.UncertainLastUsableValue), (dataType, v, status) => {
        // a raw variant, as a hostile server's decoded value may carry any JS value under any type
        const variant = { dataType, arrayType: VariantArrayType.Scalar, value: v } as unknown as Variant;
        const walked = encodeBounded(variant);
        const expected = walked.ok ? { v: walked.v, q: status.value } : { v: null, q: walked.status };
        const dataValue = new DataValue({ statusCode: status });
        (dataValue as { value: Variant }).value = variant;
        expect(encoder.encode("k", dataValue)).toEqual(expected);
      }),
      { numRuns: 3000 },
    );
  });
});
