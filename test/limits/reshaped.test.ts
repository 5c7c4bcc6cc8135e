/**
 * A value is forwarded as it is, or as null with a Bad status: never changed to fit and marked
 * Good. These are the ways it could have been changed.
 */
import { BinaryStream } from "node-opcua-binary-stream";
import { DataType, NodeId, Variant, VariantArrayType } from "node-opcua-client";
import { OpaqueStructure } from "node-opcua-extension-object";
import { describe, expect, it } from "vitest";
import { BAD_DATA_ENCODING_INVALID, BAD_ENCODING_LIMITS_EXCEEDED, encodeBounded } from "../../src/opcua/subscription/encode.ts";
import { VALUE_LIMITS } from "../../src/opcua/session/limits.ts";

function matrix(dimensions: number[], value: Uint32Array): Variant {
  return new Variant({ dataType: DataType.UInt32, arrayType: VariantArrayType.Matrix, dimensions, value });
}

/** What a client receives: encoded by node-opcua, decoded by node-opcua. */
function overTheWire(v: Variant): Variant {
  const stream = new BinaryStream(v.binaryStoreSize());
  v.encode(stream);
  const received = new Variant();
  received.decode(new BinaryStream(stream.buffer));
  return received;
}

describe("matrices", () => {
  it("keep their shape: nested arrays, outermost dimension first", () => {
    const m = overTheWire(matrix([2, 3], new Uint32Array([1, 2, 3, 4, 5, 6])));
    expect(m.arrayType).toBe(VariantArrayType.Matrix);
    expect(encodeBounded(m)).toEqual({ ok: true, v: [[1, 2, 3], [4, 5, 6]] });
    expect(encodeBounded(overTheWire(matrix([2, 2, 2], new Uint32Array([1, 2, 3, 4, 5, 6, 7, 8]))))).toEqual({ ok: true, v: [[[1, 2], [3, 4]], [[5, 6], [7, 8]]] });
    expect(encodeBounded(matrix([2, 0], new Uint32Array([])))).toEqual({ ok: true, v: [[], []] });
    // a plain array is what it was
    expect(encodeBounded(new Variant({ dataType: DataType.UInt32, arrayType: VariantArrayType.Array, value: new Uint32Array([1, 2]) }))).toEqual({ ok: true, v: [1, 2] });
  });

  it("with a million dimensions of 1 is refused, not sent as a one-element array marked Good", () => {
    const m = overTheWire(matrix(new Array<number>(1_048_576).fill(1), new Uint32Array([7])));
    expect(m.value).toHaveLength(1);
    expect(encodeBounded(m)).toMatchObject({ ok: false, status: BAD_ENCODING_LIMITS_EXCEEDED, limit: "depth", size: 1_048_576, max: VALUE_LIMITS.maxDepth });
  });

  it("whose dimensions do not match its elements is refused as invalid", () => {
    const m = matrix([2, 3], new Uint32Array([1, 2, 3, 4, 5, 6]));
    m.dimensions = [4, 2];
    expect(encodeBounded(m)).toMatchObject({ ok: false, status: BAD_DATA_ENCODING_INVALID, limit: "invalid" });
  });
});

describe("structures", () => {
  it("that node-opcua could not decode are refused as invalid, not sent as {} marked Good", () => {
    const opaque = new OpaqueStructure(new NodeId(NodeId.NodeIdType.STRING, "RogueHanging.DefaultBinary", 2), Buffer.from([5, 0, 0, 0]));
    const r = encodeBounded(new Variant({ dataType: DataType.ExtensionObject, value: opaque }));
    expect(r).toMatchObject({ ok: false, status: BAD_DATA_ENCODING_INVALID, limit: "invalid" });
    expect((r as { reason: string }).reason).toMatch(/ns=2;s=RogueHanging.DefaultBinary.*could not be decoded/);
    // also in an array
    expect(encodeBounded(new Variant({ dataType: DataType.ExtensionObject, arrayType: VariantArrayType.Array, value: [opaque] }))).toMatchObject({ ok: false, status: BAD_DATA_ENCODING_INVALID });
  });

  it("whose chain of base types is longer than the depth limit are refused, not cut to their last fields", () => {
    type Schema = { name: string; fields: { name: string; fieldType: string; category: string }[]; getBaseSchema: () => Schema | null };
    let schema: Schema | null = null;
    for (let i = 0; i < 40; i++) {
      const base: Schema | null = schema;
      schema = { name: `T${i}`, fields: [{ name: `f${i}`, fieldType: "Int32", category: "basic" }], getBaseSchema: () => base };
    }
    const value = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`f${i}`, i]));
    const structure = Object.assign(Object.create({ schema }), value);
    const variant = { dataType: DataType.ExtensionObject, arrayType: VariantArrayType.Scalar, value: structure } as unknown as Variant;
    expect(encodeBounded(variant)).toMatchObject({ ok: false, status: BAD_ENCODING_LIMITS_EXCEEDED, limit: "depth" });
  });
});
