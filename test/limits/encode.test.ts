import { Writable } from "node:stream";
import fc from "fast-check";
import { DataType, DataValue, LocalizedText, StatusCodes, Variant, VariantArrayType } from "node-opcua-client";
import { BinaryStream } from "node-opcua-binary-stream";
import { DataTypeFactory, getStandardDataTypeFactory, StructuredTypeSchema } from "node-opcua-factory";
import { NodeId } from "node-opcua-nodeid";
import { createDynamicObjectConstructor } from "node-opcua-schemas";
import { BuildInfo, EUInformation, Range, ServerStatusDataType } from "node-opcua-types";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { BAD_ENCODING_LIMITS_EXCEEDED, encodeBounded, encodeVariant, ValueEncoder } from "../../src/opcua/subscription/encode.ts";
import { VALUE_LIMITS, type ValueLimits } from "../../src/opcua/session/limits.ts";
import { ROGUE_HTML, ROGUE_PROTO_JSON } from "../../src/simulator/nodes.ts";

const v = (dataType: DataType, value: unknown, arrayType = VariantArrayType.Scalar) => new Variant({ dataType, value, arrayType });
/** Variant-shaped, without node-opcua's checks: any object a decoded ExtensionObject could hold. */
const raw = (value: unknown) => ({ dataType: DataType.ExtensionObject, arrayType: VariantArrayType.Scalar, value }) as unknown as Variant;
const jsonBytes = (x: unknown) => Buffer.byteLength(JSON.stringify(x), "utf8");

function nested(depth: number): Variant {
  let inner = v(DataType.Int32, 7);
  for (let i = 0; i < depth; i++) inner = v(DataType.Variant, [inner], VariantArrayType.Array);
  return inner;
}

describe("value encoding", () => {
  it("keeps the lossless forms of docs/protocol.md", () => {
    expect(encodeVariant(v(DataType.Int64, [0x0020_0000, 1]))).toBe("9007199254740993");
    expect(encodeVariant(v(DataType.UInt64, [0xffff_ffff, 0xffff_ffff]))).toBe("18446744073709551615");
    expect(encodeVariant(v(DataType.Int64, [0xffff_ffff, 0xffff_ffff]))).toBe("-1");
    expect(encodeVariant(v(DataType.Double, Number.NaN))).toBe("NaN");
    expect(encodeVariant(v(DataType.Float, Number.NEGATIVE_INFINITY))).toBe("-Infinity");
    expect(encodeVariant(v(DataType.ByteString, Buffer.from([0, 1, 255])))).toBe("AAH/");
    expect(encodeVariant(v(DataType.DateTime, new Date("2026-01-02T03:04:05.678Z")))).toBe("2026-01-02T03:04:05.678Z");
    expect(encodeVariant(v(DataType.LocalizedText, new LocalizedText({ text: "Bereit", locale: "de" })))).toBe("Bereit");
    expect(encodeVariant(v(DataType.UInt32, new Uint32Array([1, 2, 3]), VariantArrayType.Array))).toEqual([1, 2, 3]);
    expect(encodeVariant(v(DataType.Boolean, [true, false], VariantArrayType.Array))).toEqual([true, false]);
    expect(encodeVariant(v(DataType.StatusCode, StatusCodes.BadNodeIdUnknown))).toBe(StatusCodes.BadNodeIdUnknown.value);
    expect(encodeVariant(new Variant({ dataType: DataType.Null }))).toBeNull();
  });

  it("encodes structures field by field, with the same rules as scalars", () => {
    const status = new ServerStatusDataType({
      startTime: new Date("2026-01-01T00:00:00Z"),
      state: 0,
      buildInfo: new BuildInfo({ productName: "Saw", buildNumber: "42" }),
      shutdownReason: new LocalizedText({ text: "bye", locale: "en" }),
    });
    expect(encodeVariant(v(DataType.ExtensionObject, status))).toEqual({
      startTime: "2026-01-01T00:00:00.000Z",
      currentTime: "1601-01-01T00:00:00.000Z",
      state: 0,
      buildInfo: { productUri: "", manufacturerName: "", productName: "Saw", softwareVersion: "", buildNumber: "42", buildDate: "1601-01-01T00:00:00.000Z" },
      secondsTillShutdown: 0,
      shutdownReason: "bye",
    });
    const eu = new EUInformation({ namespaceUri: "http://www.opcfoundation.org/UA/units/un/cefact", unitId: 5066068, displayName: { text: "mm" } });
    expect(encodeVariant(v(DataType.ExtensionObject, [eu, new Range({ low: 0, high: 10 })], VariantArrayType.Array))).toEqual([
      { namespaceUri: "http://www.opcfoundation.org/UA/units/un/cefact", unitId: 5066068, displayName: "mm", description: null },
      { low: 0, high: 10 },
    ]);
  });

  it("refuses a 10 MB string, a million-element array and a 1 MB ByteString on their length alone", () => {
    const huge = "x".repeat(10 * 1024 * 1024);
    expect(encodeBounded(v(DataType.String, huge))).toMatchObject({ ok: false, status: BAD_ENCODING_LIMITS_EXCEEDED, limit: "string", size: huge.length });
    // Every element read is counted: refusing by length must read none of them (no copy, no pass over the contents).
    let reads = 0;
    const counted = <T extends object>(target: T) =>
      new Proxy(target, {
        get(t, key) {
          if (typeof key === "string" && /^\d+$/.test(key)) reads++;
          return Reflect.get(t, key) as unknown;
        },
      });
    const million = { dataType: DataType.UInt32, arrayType: VariantArrayType.Array, value: counted({ length: 1_000_000 }) } as unknown as Variant;
    expect(encodeBounded(million)).toMatchObject({ ok: false, limit: "array", size: 1_000_000 });
    const bytes = counted(new Uint8Array(1024 * 1024));
    expect(encodeBounded({ dataType: DataType.ByteString, arrayType: VariantArrayType.Scalar, value: bytes } as unknown as Variant)).toMatchObject({ ok: false, limit: "string" });
    expect(reads).toBe(0);
    // the counting works: a small array within the limits is read element by element
    expect(encodeBounded({ dataType: DataType.UInt32, arrayType: VariantArrayType.Array, value: counted([1, 2, 3]) } as unknown as Variant)).toMatchObject({ ok: true, v: [1, 2, 3] });
    expect(reads).toBe(3);
  });

  it("refuses nesting deeper than the limit, and keeps what is within it", () => {
    expect(encodeBounded(nested(100))).toMatchObject({ ok: false, limit: "depth", max: VALUE_LIMITS.maxDepth });
    // each level is a Variant array holding one Variant: two levels per step
    const shallow = encodeBounded(nested(10));
    expect(shallow.ok).toBe(true);
    expect(JSON.stringify(shallow.ok && shallow.v)).toBe(`${"[".repeat(10)}7${"]".repeat(10)}`);
  });

  it("stops at the byte limit when many small parts add up", () => {
    const many = Array.from({ length: 10_000 }, (_, i) => `value-${i}`);
    expect(encodeBounded(v(DataType.String, many, VariantArrayType.Array))).toMatchObject({ ok: false, limit: "bytes", max: VALUE_LIMITS.maxItemBytes });
  });

  it("counts the bytes of the JSON exactly: a value fits a limit of its own size and not one byte less", () => {
    const limits = (maxItemBytes: number): ValueLimits => ({ maxItemBytes, maxStringLength: 1e6, maxArrayLength: 1e6, maxDepth: 64 });
    const json = fc.letrec((tie) => ({
      value: fc.oneof(
        { depthSize: "small", withCrossShrink: true },
        fc.string({ unit: "binary" }),
        fc.double(),
        fc.integer(),
        fc.boolean(),
        fc.constant(null),
        fc.array(tie("value"), { maxLength: 5 }),
        fc.dictionary(fc.string({ unit: "binary" }), tie("value"), { maxKeys: 4 }),
      ),
    })).value;
    fc.assert(
      fc.property(json, (value) => {
        const variant = raw(value);
        const full = encodeBounded(variant, limits(1e9));
        expect(full.ok).toBe(true);
        if (!full.ok) return;
        const size = jsonBytes(full.v);
        expect(encodeBounded(variant, limits(size)).ok).toBe(true);
        expect(encodeBounded(variant, limits(size - 1))).toMatchObject({ ok: false, limit: "bytes" });
      }),
      { numRuns: 300, seed: 42 },
    );
  });

  it("never throws, whatever object arrives, and always yields JSON within the limit", () => {
    fc.assert(
      fc.property(fc.anything({ withBigInt: true, withDate: true, withTypedArray: true, withNullPrototype: true, withSparseArray: true, withBoxedValues: true, withMap: true, withSet: true }), (value) => {
        const r = encodeBounded(raw(value));
        if (r.ok) expect(jsonBytes(r.v)).toBeLessThanOrEqual(VALUE_LIMITS.maxItemBytes);
        else expect(r.status).toBeGreaterThanOrEqual(0x8000_0000);
      }),
      { numRuns: 500, seed: 7 },
    );
  });
});

describe("hostile field names", () => {
  it("a structure decoded by node-opcua with __proto__, constructor and prototype fields stays plain data", () => {
    // the way node-opcua builds a class for a server's own structure type, from its definition
    const factory = new DataTypeFactory([getStandardDataTypeFactory()]);
    const schema = new StructuredTypeSchema({
      name: "Evil",
      baseType: "Structure",
      dataTypeFactory: factory,
      fields: [
        { name: "__proto__", fieldType: "String" },
        { name: "constructor", fieldType: "String" },
        { name: "prototype", fieldType: "Int64" },
        { name: "polluted", fieldType: "LocalizedText" },
      ],
    } as ConstructorParameters<typeof StructuredTypeSchema>[0]);
    (schema as unknown as { dataTypeNodeId: NodeId }).dataTypeNodeId = new NodeId(NodeId.NodeIdType.NUMERIC, 5001, 1);
    const Evil = createDynamicObjectConstructor(schema, factory) as unknown as new (o?: object) => { encode(s: BinaryStream): void; decode(s: BinaryStream): void; binaryStoreSize(): number };
    const sent = new Evil({ ["__proto__"]: "p", constructor: "c", prototype: [0, 5], polluted: { text: "yes" } });
    const wire = new BinaryStream(sent.binaryStoreSize());
    sent.encode(wire);
    const received = new Evil();
    received.decode(new BinaryStream(wire.buffer));

    const r = encodeBounded(v(DataType.ExtensionObject, received));
    expect(r.ok).toBe(true);
    const out = (r as { v: Record<string, unknown> }).v;
    expect(Object.getPrototypeOf(out)).toBeNull();
    expect(Object.keys(out)).toEqual(["__proto__", "constructor", "prototype", "polluted"]);
    expect(out["__proto__"]).toBe("p");
    expect(out.constructor).toBe("c");
    expect(out.prototype).toBe("5");
    expect(out.polluted).toBe("yes");
    expect(JSON.stringify(out)).toBe('{"__proto__":"p","constructor":"c","prototype":"5","polluted":"yes"}');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("objects with own __proto__ keys are copied as data and pollute nothing downstream", () => {
    const hostile = JSON.parse(ROGUE_PROTO_JSON) as Record<string, unknown>;
    const r = encodeBounded(raw(hostile));
    expect(r.ok).toBe(true);
    const out = (r as { v: Record<string, unknown> }).v;
    expect(Object.getPrototypeOf(out)).toBeNull();
    expect(Object.keys(out)).toEqual(["__proto__", "constructor", "prototype"]);
    // what the buffer, the uplink and the cloud do with it: serialize, parse, merge
    const text = JSON.stringify({ v: out });
    expect(text).toContain('"__proto__":{"polluted":"yes"}');
    const parsed = JSON.parse(text) as { v: Record<string, unknown> };
    const merged = { ...parsed.v };
    expect(Object.keys(merged)).toContain("__proto__");
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect((Object.prototype as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("a String that holds such JSON is forwarded as the string, never parsed", () => {
    expect(encodeVariant(v(DataType.String, ROGUE_PROTO_JSON))).toBe(ROGUE_PROTO_JSON);
  });
});

describe("text that is not what it seems", () => {
  it("forwards markup and script unchanged, as data", () => {
    expect(encodeVariant(v(DataType.String, ROGUE_HTML))).toBe(ROGUE_HTML);
    // JSON does not escape < > & ' : the cloud receives the characters and must escape them itself
    expect(JSON.stringify(encodeVariant(v(DataType.String, ROGUE_HTML)))).toBe(`"${ROGUE_HTML.replaceAll('"', '\\"')}"`);
  });

  it("turns malformed UTF-8 from the wire into replacement characters and valid JSON", () => {
    // a String variant as node-opcua encodes it, with its bytes then broken the way a rogue server would send them
    const good = v(DataType.String, "ab\u00e9cd");
    const wire = new BinaryStream(good.binaryStoreSize());
    good.encode(wire);
    const bytes = Buffer.from(wire.buffer);
    const at = bytes.indexOf(Buffer.from("\u00e9", "utf8"));
    bytes[at] = 0xff; // not a UTF-8 byte
    bytes[at + 1] = 0xc0; // a lead byte with nothing after it
    const received = new Variant();
    received.decode(new BinaryStream(bytes));

    const out = encodeVariant(received) as string;
    expect(out).toBe("ab\ufffd\ufffdcd");
    expect(out.isWellFormed()).toBe(true);
    expect(JSON.parse(JSON.stringify(out))).toBe(out);
  });

  it("lone surrogates become JSON escapes, which parse back to the same string", () => {
    const lone = "a\ud800b\udfffc";
    const out = encodeVariant(v(DataType.String, lone)) as string;
    expect(out).toBe(lone);
    const json = JSON.stringify(out);
    expect(json).toBe('"a\\ud800b\\udfffc"');
    expect(Buffer.from(json, "utf8").toString("utf8")).toBe(json); // pure ASCII: survives any UTF-8 transport
    expect(JSON.parse(json)).toBe(lone);
  });
});

describe("ValueEncoder", () => {
  function capture() {
    const lines: Record<string, unknown>[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
        done();
      },
    });
    return { lines, logger: pino({ level: "info" }, stream) };
  }
  const huge = (n: number) => new DataValue({ value: v(DataType.String, "z".repeat(n)), statusCode: StatusCodes.Good, sourceTimestamp: new Date() });

  it("marks a refused value with BadEncodingLimitsExceeded and null, and passes good ones with the server's status", () => {
    const { logger } = capture();
    const enc = new ValueEncoder({ logger });
    expect(enc.encode("big", huge(100_000))).toEqual({ v: null, q: 0x8008_0000 });
    const uncertain = new DataValue({ value: v(DataType.Double, 1.5), statusCode: StatusCodes.UncertainLastUsableValue });
    expect(enc.encode("ok", uncertain)).toEqual({ v: 1.5, q: StatusCodes.UncertainLastUsableValue.value });
  });

  it("logs a key once per period, with its size and limit, never its value", async () => {
    const { lines, logger } = capture();
    const enc = new ValueEncoder({ logger, logEveryMs: 200 });
    for (let i = 0; i < 50; i++) enc.encode("big", huge(70_000 + i));
    enc.encode("other", huge(80_000));
    await new Promise((r) => setTimeout(r, 10));
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ point: "big", limit: "string", size: 70_000, max: VALUE_LIMITS.maxStringLength, suppressed: 0 });
    expect(String(lines[0]!.msg)).toContain("'big'");
    expect(JSON.stringify(lines)).not.toContain("zzzz");
    await new Promise((r) => setTimeout(r, 250));
    enc.encode("big", huge(90_000));
    await new Promise((r) => setTimeout(r, 10));
    expect(lines).toHaveLength(3);
    expect(lines[2]).toMatchObject({ point: "big", size: 90_000, suppressed: 49 });
  });
});
