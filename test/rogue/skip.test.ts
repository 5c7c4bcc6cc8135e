import fc from "fast-check";
import { BinaryStream } from "node-opcua-binary-stream";
import { DataType, DataValue, DiagnosticInfo, LocalizedText, NodeId, QualifiedName, StatusCodes, Variant, VariantArrayType } from "node-opcua-client";
import { Range } from "node-opcua-types";
import { describe, expect, it } from "vitest";
import { skipVariant } from "../../src/opcua/session/skip.ts";

function encode(v: Variant): Buffer {
  const stream = new BinaryStream(v.binaryStoreSize());
  v.encode(stream);
  return stream.buffer;
}

/** Variants nested `depth` levels deep, the way a rogue server builds them. */
function nested(depth: number, bottom = 7): Variant {
  let v = new Variant({ dataType: DataType.Int32, value: bottom });
  for (let i = 0; i < depth; i++) v = new Variant({ dataType: DataType.Variant, arrayType: VariantArrayType.Array, value: [v] });
  return v;
}

const scalars: fc.Arbitrary<Variant>[] = [
  fc.boolean().map((value) => new Variant({ dataType: DataType.Boolean, value })),
  fc.integer({ min: -128, max: 127 }).map((value) => new Variant({ dataType: DataType.SByte, value })),
  fc.integer({ min: 0, max: 65535 }).map((value) => new Variant({ dataType: DataType.UInt16, value })),
  fc.integer().map((value) => new Variant({ dataType: DataType.Int32, value })),
  fc.tuple(fc.nat(), fc.nat()).map(([h, l]) => new Variant({ dataType: DataType.UInt64, arrayType: VariantArrayType.Scalar, value: [h, l] })),
  fc.double().map((value) => new Variant({ dataType: DataType.Double, value })),
  fc.option(fc.string(), { nil: null }).map((value) => new Variant({ dataType: DataType.String, value })),
  fc.uint8Array({ maxLength: 20 }).map((b) => new Variant({ dataType: DataType.ByteString, value: Buffer.from(b) })),
  fc.date({ noInvalidDate: true, min: new Date("1601-01-02"), max: new Date("9999-01-01") }).map((value) => new Variant({ dataType: DataType.DateTime, value })),
  fc.constantFrom(
    new Variant({ dataType: DataType.NodeId, value: new NodeId(NodeId.NodeIdType.NUMERIC, 7, 0) }),
    new Variant({ dataType: DataType.NodeId, value: new NodeId(NodeId.NodeIdType.NUMERIC, 70_000, 3) }),
    new Variant({ dataType: DataType.NodeId, value: new NodeId(NodeId.NodeIdType.STRING, "Rogue.x", 2) }),
    new Variant({ dataType: DataType.NodeId, value: new NodeId(NodeId.NodeIdType.GUID, "72962B91-FA75-4AE6-8D28-B404DC7DAF63", 1) }),
    new Variant({ dataType: DataType.ExpandedNodeId, value: new NodeId(NodeId.NodeIdType.NUMERIC, 300, 4) }),
    new Variant({ dataType: DataType.QualifiedName, value: new QualifiedName({ name: "Speed", namespaceIndex: 2 }) }),
    new Variant({ dataType: DataType.LocalizedText, value: new LocalizedText({ text: "bereit", locale: "de" }) }),
    new Variant({ dataType: DataType.LocalizedText, value: new LocalizedText({ text: "only text" }) }),
    new Variant({ dataType: DataType.StatusCode, value: StatusCodes.BadNodeIdUnknown }),
    new Variant({ dataType: DataType.Guid, value: "72962B91-FA75-4AE6-8D28-B404DC7DAF63" }),
    new Variant({ dataType: DataType.ExtensionObject, value: new Range({ low: 1, high: 2 }) }),
    new Variant({ dataType: DataType.ExtensionObject, value: null }),
    new Variant({ dataType: DataType.DiagnosticInfo, value: new DiagnosticInfo({ symbolicId: 3, additionalInfo: "why", innerStatusCode: StatusCodes.BadTimeout, innerDiagnosticInfo: new DiagnosticInfo({ locale: 1 }) }) }),
    new Variant({ dataType: DataType.Null }),
  ),
  fc.array(fc.integer(), { maxLength: 20 }).map((a) => new Variant({ dataType: DataType.Int32, arrayType: VariantArrayType.Array, value: new Int32Array(a) })),
  fc.array(fc.string(), { maxLength: 5 }).map((value) => new Variant({ dataType: DataType.String, arrayType: VariantArrayType.Array, value })),
  fc.constant(new Variant({ dataType: DataType.UInt32, arrayType: VariantArrayType.Matrix, dimensions: [2, 3], value: new Uint32Array([1, 2, 3, 4, 5, 6]) })),
];

const variant: fc.Arbitrary<Variant> = fc.letrec<{ v: Variant }>((tie) => ({
  v: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    ...scalars,
    fc.array(tie("v"), { maxLength: 4 }).map((value) => new Variant({ dataType: DataType.Variant, arrayType: VariantArrayType.Array, value })),
    tie("v").map((value) => new Variant({ dataType: DataType.DataValue, value: new DataValue({ value, statusCode: StatusCodes.UncertainLastUsableValue, sourceTimestamp: new Date(1e12), sourcePicoseconds: 10, serverTimestamp: new Date(2e12) }) })),
  ),
})).v;

describe("skipping an encoded Variant", () => {
  it("ends exactly where node-opcua's encoding of it ends, whatever it holds", () => {
    fc.assert(
      fc.property(variant, fc.uint8Array({ maxLength: 8 }), (v, trailer) => {
        const wire = encode(v);
        const buf = Buffer.concat([Buffer.from([0xaa]), wire, Buffer.from(trailer)]);
        expect(skipVariant(buf, 1)).toBe(1 + wire.length);
      }),
      { numRuns: 500, seed: 18 },
    );
  });

  it("steps over nesting far deeper than node-opcua decodes, without recursion", () => {
    const deep = encode(nested(200));
    expect(() => new Variant().decode(new BinaryStream(deep))).toThrow(/nesting/);
    expect(skipVariant(deep, 0)).toBe(deep.length);
    // a chain a hundred thousand levels deep: the call stack would not hold it
    const level = Buffer.from([0x80 | DataType.Variant, 1, 0, 0, 0]);
    const bottom = Buffer.from([DataType.Int32, 7, 0, 0, 0]);
    const chain = Buffer.concat([...new Array<Buffer>(100_000).fill(level), bottom]);
    expect(skipVariant(chain, 0)).toBe(chain.length);
  });

  it("refuses bytes that are not a Variant instead of running past them", () => {
    const wire = encode(nested(3));
    for (let cut = 1; cut < wire.length; cut++) expect(() => skipVariant(wire.subarray(0, cut), 0)).toThrow(expect.objectContaining({ name: "KerfError", code: "OPCUA_DECODE" }));
    // an unknown type, an array longer than the bytes behind it, a negative length
    expect(() => skipVariant(Buffer.from([30]), 0)).toThrow(/type 30/);
    expect(() => skipVariant(Buffer.from([0x80 | DataType.Variant, 0xff, 0xff, 0xff, 0x7f, 0]), 0)).toThrow(/elements/);
    expect(() => skipVariant(Buffer.from([DataType.String, 0xfe, 0xff, 0xff, 0xff]), 0)).toThrow(/length -2/);
  });
});
