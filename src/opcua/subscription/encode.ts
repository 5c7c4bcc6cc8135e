import { DataType, StatusCodes, VariantArrayType, type DataValue, type Variant } from "node-opcua-client";
import { OpaqueStructure } from "node-opcua-extension-object";
import { StatusCode } from "node-opcua-status-code";
import type { Logger } from "../../log.ts";
import { VALUE_LIMITS, type ValueLimits } from "../session/limits.ts";
import { KerfError } from "../../errors.ts";
import { NUMERIC } from "./scale.ts";

/**
 * Turns an OPC UA value into the JSON-safe form of docs/protocol.md. JSON has no 64-bit
 * integers, no bytes and no NaN, so those get a lossless string form rather than a silent
 * rounding or a null.
 *
 * The server is not trusted: every value is encoded under `ValueLimits`, checked before any
 * large copy is made, so a 10 MB string or a million-element array costs nothing beyond
 * what node-opcua already decoded. Structures become objects without a prototype, so field
 * names like `__proto__` stay plain data wherever the value goes.
 *
 * A value leaves whole or not at all (null with a Bad status): a matrix keeps its shape, and
 * a structure node-opcua could not decode is refused rather than sent as `{}`.
 */

/** The status a value gets when it is over a limit: 0x80080000. */
export const BAD_ENCODING_LIMITS_EXCEEDED = StatusCodes.BadEncodingLimitsExceeded.value;
/** The status a value gets when it cannot be encoded at all: 0x80380000. */
export const BAD_DATA_ENCODING_INVALID = StatusCodes.BadDataEncodingInvalid.value;

export type LimitName = "bytes" | "string" | "array" | "depth";

export type Encoded =
  | { ok: true; v: unknown }
  /** `size` is what was measured when the limit was hit: for bytes and depth, a lower bound. */
  | { ok: false; status: number; limit: LimitName; size: number; max: number }
  | { ok: false; status: number; limit: "invalid"; reason: string };

/** Encodes a variant within `limits`, or says which limit it broke. Never throws. */
export function encodeBounded(variant: Variant | null | undefined, limits: ValueLimits = VALUE_LIMITS): Encoded {
  const walk = new Walk(limits);
  try {
    return { ok: true, v: walk.variant(variant, 0) };
  } catch (err) {
    if (err instanceof Overflow) return { ok: false, status: BAD_ENCODING_LIMITS_EXCEEDED, limit: err.limit, size: err.size, max: err.max };
    return { ok: false, status: BAD_DATA_ENCODING_INVALID, limit: "invalid", reason: err instanceof Error ? err.message : String(err) };
  }
}

/** The encoded value, or null when it is over a limit (use `ValueEncoder` to mark and log that). */
export function encodeVariant(variant: Variant | null | undefined, limits: ValueLimits = VALUE_LIMITS): unknown {
  const r = encodeBounded(variant, limits);
  return r.ok ? r.v : null;
}

export interface ValueEncoderOptions {
  logger: Logger;
  limits?: ValueLimits;
  /** A key over a limit is logged at its first value, then at most once per this period; default 10 min. */
  logEveryMs?: number;
}

/**
 * Encodes the values of data items. A value over a limit is not forwarded: the item gets
 * `v: null` and `q` BadEncodingLimitsExceeded, and the key is logged (rate-limited) with the
 * limit, the size measured and the maximum, never the value itself.
 */
export class ValueEncoder {
  readonly #log: Logger;
  readonly #limits: ValueLimits;
  readonly #everyMs: number;
  /** Per key: when it was last logged and how many hits were not logged since. */
  readonly #logged = new Map<string, { at: number; suppressed: number }>();

  constructor(options: ValueEncoderOptions) {
    this.#log = options.logger;
    this.#limits = options.limits ?? VALUE_LIMITS;
    this.#everyMs = options.logEveryMs ?? 10 * 60_000;
  }

  /** `v` and `q` for an item of `key`: the server's status, or ours when the value was refused. */
  encode(key: string, dataValue: DataValue): { v: unknown; q: number } {
    const variant = dataValue.value;
    // Most values are plain numbers or booleans, which no limit can catch: skip the walk.
    if (variant && variant.arrayType === VariantArrayType.Scalar && PLAIN_SCALARS.has(variant.dataType)) {
      const v: unknown = variant.value;
      if ((typeof v === "number" && Number.isFinite(v)) || typeof v === "boolean") return { v, q: dataValue.statusCode.value };
    }
    const r = encodeBounded(variant, this.#limits);
    if (r.ok) return { v: r.v, q: dataValue.statusCode.value };
    this.#report(key, r);
    return { v: null, q: r.status };
  }

  #report(key: string, r: Exclude<Encoded, { ok: true }>): void {
    const now = Date.now();
    const seen = this.#logged.get(key);
    if (seen && now - seen.at < this.#everyMs) {
      seen.suppressed++;
      return;
    }
    // keys come from the mapping, so this stays small; the cap only guards against surprises
    if (!seen && this.#logged.size >= 10_000) this.#logged.delete(this.#logged.keys().next().value!);
    this.#logged.set(key, { at: now, suppressed: 0 });
    const suppressed = seen?.suppressed ?? 0;
    if (r.limit === "invalid") {
      this.#log.warn({ point: key, reason: r.reason, suppressed }, `value of '${key}' cannot be encoded; sending null with BadDataEncodingInvalid`);
      return;
    }
    const what = { bytes: "JSON bytes", string: "string length", array: "array length", depth: "nesting depth" }[r.limit];
    this.#log.warn(
      // `point`, as elsewhere: the logger redacts a field named `key`
      { point: key, limit: r.limit, size: r.size, max: r.max, suppressed },
      `value of '${key}' exceeds the ${what} limit (${r.size}${r.limit === "bytes" || r.limit === "depth" ? " or more" : ""} > ${r.max}); sending null with BadEncodingLimitsExceeded`,
    );
  }
}

/** Types whose finite number or boolean value is its own JSON form (not Int64: that becomes a string). */
const PLAIN_SCALARS: ReadonlySet<DataType> = new Set([DataType.Boolean, ...[...NUMERIC].filter((t) => t !== DataType.Int64 && t !== DataType.UInt64)]);

// Values of one publish response mostly share a few timestamps (one per server sampling tick,
// interleaved item by item when the server had queued several): one string per distinct
// timestamp saves formatting time and memory (each item keeps its last value).
const isoByMs = new Map<number, string>();

export function dataValueTime(dv: DataValue): string {
  const t = dv.sourceTimestamp ?? dv.serverTimestamp;
  const ms = t ? t.getTime() : NaN;
  if (Number.isNaN(ms)) return new Date().toISOString();
  let iso = isoByMs.get(ms);
  if (iso === undefined) {
    if (isoByMs.size >= 256) isoByMs.clear();
    iso = t!.toISOString();
    isoByMs.set(ms, iso);
  }
  return iso;
}

class Overflow {
  readonly limit: LimitName;
  readonly size: number;
  readonly max: number;
  constructor(limit: LimitName, size: number, max: number) {
    this.limit = limit;
    this.size = size;
    this.max = max;
  }
}

interface FieldSchema {
  name: string;
  fieldType: string;
  category?: string;
  isArray?: boolean;
}

interface StructureSchema {
  fields?: FieldSchema[];
  getBaseSchema?: () => StructureSchema | null | undefined;
}

/**
 * One encoding pass. It counts the UTF-8 bytes of the JSON it is producing as it goes, so
 * the result's `JSON.stringify` is never longer than `maxItemBytes`, and it checks a string's
 * or an array's length before touching its contents.
 */
class Walk {
  readonly #l: ValueLimits;
  #bytes = 0;

  constructor(limits: ValueLimits) {
    this.#l = limits;
  }

  variant(variant: Variant | null | undefined, depth: number): unknown {
    if (!variant || variant.dataType === DataType.Null) return this.#null();
    if (variant.arrayType !== VariantArrayType.Scalar && variant.value != null) {
      const list = variant.value as ArrayLike<unknown>;
      // a matrix keeps its shape: its flat list alone would be another value
      if (variant.arrayType === VariantArrayType.Matrix && variant.dimensions?.length) return this.#matrix(variant.dataType, list, variant.dimensions, depth);
      this.#container(list.length, depth);
      const out = new Array<unknown>(list.length);
      for (let i = 0; i < list.length; i++) out[i] = this.scalar(variant.dataType, list[i], depth + 1);
      return out;
    }
    return this.scalar(variant.dataType, variant.value, depth);
  }

  /**
   * Nested arrays, outermost dimension first; the flat list holds the elements with the last
   * index varying fastest (OPC UA Part 6, 5.2.2.16). Checked before any copy: the nesting is
   * the number of dimensions, which a server may make a million.
   */
  #matrix(type: DataType, list: ArrayLike<unknown>, dimensions: readonly number[], depth: number): unknown[] {
    if (depth + dimensions.length > this.#l.maxDepth) throw new Overflow("depth", depth + dimensions.length, this.#l.maxDepth);
    let product = 1;
    for (const d of dimensions) product *= d;
    if (product !== list.length) throw new KerfError("OPCUA_DECODE", `a matrix whose ${dimensions.length} dimensions do not match its ${list.length} elements`);
    let next = 0;
    const level = (i: number, at: number): unknown[] => {
      const n = dimensions[i]!;
      this.#container(n, at);
      const out = new Array<unknown>(n);
      for (let k = 0; k < n; k++) out[k] = i === dimensions.length - 1 ? this.scalar(type, list[next++], at + 1) : level(i + 1, at + 1);
      return out;
    };
    return level(0, depth);
  }

  scalar(type: DataType, value: unknown, depth: number): unknown {
    if (value === null || value === undefined) return this.#null();
    switch (type) {
      case DataType.Boolean:
        return typeof value === "boolean" ? this.#bool(value) : this.any(value, depth);
      case DataType.Int64:
      case DataType.UInt64:
        return this.#string(int64ToString(value, type === DataType.Int64));
      case DataType.String:
      case DataType.XmlElement:
        return typeof value === "string" ? this.#string(value) : this.any(value, depth);
      case DataType.ByteString:
        return value instanceof Uint8Array ? this.#byteString(value) : this.#null();
      case DataType.DateTime:
        return value instanceof Date ? this.#date(value) : this.#null();
      case DataType.LocalizedText:
        return this.#stringOrNull((value as { text?: unknown }).text);
      case DataType.QualifiedName:
        return this.#stringOrNull((value as { name?: unknown }).name);
      case DataType.NodeId:
      case DataType.ExpandedNodeId:
      case DataType.Guid:
        return this.#string(String(value));
      case DataType.StatusCode:
        return this.#number((value as { value?: unknown }).value);
      case DataType.Variant:
        return this.variant(value as Variant, depth + 1);
      case DataType.DataValue:
        return this.#dataValue(value as DataValue, depth);
      case DataType.ExtensionObject:
      case DataType.DiagnosticInfo:
        return this.any(value, depth);
      default:
        return typeof value === "number" ? this.#number(value) : this.any(value, depth);
    }
  }

  /** Anything found inside a structure, typed by what it is rather than by a DataType. */
  any(value: unknown, depth: number): unknown {
    switch (typeof value) {
      case "string":
        return this.#string(value);
      case "number":
        return this.#number(value);
      case "boolean":
        return this.#bool(value);
      case "bigint":
        return this.#string(String(value));
      case "object":
        break;
      default:
        return this.#null(); // undefined, functions, symbols
    }
    if (value === null) return this.#null();
    if (value instanceof Date) return this.#date(value);
    if (value instanceof Uint8Array) return this.#byteString(value);
    if (ArrayBuffer.isView(value)) return this.#typedArray(value as unknown as ArrayLike<number | bigint>, depth);
    if (Array.isArray(value)) {
      this.#container(value.length, depth);
      return value.map((e) => this.any(e, depth + 1));
    }
    if (value instanceof StatusCode) return this.#number(value.value);
    // an ExtensionObject node-opcua could not decode: its fields are not known, and `{}` would be another value
    if (value instanceof OpaqueStructure) throw new KerfError("OPCUA_DECODE", `a structure of type ${String(value.nodeId).slice(0, 200)} that could not be decoded with the server's type definitions`);
    if (isVariant(value)) return this.variant(value, depth + 1);
    if (isNodeId(value)) return this.#string(String(value));
    const schema = (value as { schema?: StructureSchema }).schema;
    if (schema && Array.isArray(schema.fields)) return this.#structure(value as Record<string, unknown>, schema, depth);
    return this.#object(value as Record<string, unknown>, depth);
  }

  /** A decoded structure, field by field in the order of its schema (base type's fields first). */
  #structure(value: Record<string, unknown>, schema: StructureSchema, depth: number): unknown {
    const fields: FieldSchema[] = [];
    const chain: StructureSchema[] = [];
    for (let s: StructureSchema | null | undefined = schema; s; s = s.getBaseSchema?.()) {
      // a longer chain of base types is not a real type (or a loop): leaving out its base fields would change the value
      if (chain.length >= this.#l.maxDepth) throw new Overflow("depth", chain.length + 1, this.#l.maxDepth);
      chain.unshift(s);
    }
    for (const s of chain) fields.push(...(s.fields ?? []));
    this.#container(fields.length, depth);
    const out: Record<string, unknown> = Object.create(null);
    for (const f of fields) {
      this.#key(f.name);
      // only own fields: for a field named __proto__ or constructor, `value[name]` would
      // otherwise read the object's prototype or class
      const v = Object.hasOwn(value, f.name) ? value[f.name] : undefined;
      out[f.name] = this.#field(f, v, depth + 1);
    }
    return out;
  }

  #field(f: FieldSchema, v: unknown, depth: number): unknown {
    if (v === null || v === undefined) return this.#null();
    if (f.isArray && typeof v === "object" && "length" in (v as object)) {
      const list = v as ArrayLike<unknown>;
      this.#container(list.length, depth);
      const out = new Array<unknown>(list.length);
      for (let i = 0; i < list.length; i++) out[i] = this.#fieldElement(f, list[i], depth + 1);
      return out;
    }
    return this.#fieldElement(f, v, depth);
  }

  #fieldElement(f: FieldSchema, v: unknown, depth: number): unknown {
    const type = f.category === "basic" ? (DataType as unknown as Record<string, number | undefined>)[f.fieldType] : undefined;
    return typeof type === "number" ? this.scalar(type, v, depth) : this.any(v, depth);
  }

  /** Any other object: its own enumerable fields, on an object without a prototype. */
  #object(value: Record<string, unknown>, depth: number): unknown {
    const keys = Object.keys(value);
    this.#container(keys.length, depth);
    const out: Record<string, unknown> = Object.create(null);
    keys.forEach((k) => {
      this.#key(k);
      out[k] = this.any(value[k], depth + 1);
    });
    return out;
  }

  #dataValue(dv: DataValue, depth: number): unknown {
    this.#container(4, depth);
    const out: Record<string, unknown> = Object.create(null);
    this.#key("value");
    out.value = this.variant(dv.value, depth + 1);
    this.#key("statusCode");
    out.statusCode = this.#number(dv.statusCode?.value ?? 0);
    this.#key("sourceTimestamp");
    out.sourceTimestamp = dv.sourceTimestamp ? this.#date(dv.sourceTimestamp) : this.#null();
    this.#key("serverTimestamp");
    out.serverTimestamp = dv.serverTimestamp ? this.#date(dv.serverTimestamp) : this.#null();
    return out;
  }

  #typedArray(list: ArrayLike<number | bigint>, depth: number): unknown[] {
    this.#container(list.length, depth);
    const out = new Array<unknown>(list.length);
    for (let i = 0; i < list.length; i++) {
      const e = list[i]!;
      out[i] = typeof e === "bigint" ? this.#string(String(e)) : this.#number(e);
    }
    return out;
  }

  /** An array or object of `n` members at `depth`: brackets and separators, checked first. */
  #container(n: number, depth: number): void {
    if (n > this.#l.maxArrayLength) throw new Overflow("array", n, this.#l.maxArrayLength);
    if (depth + 1 > this.#l.maxDepth) throw new Overflow("depth", depth + 1, this.#l.maxDepth);
    this.#add(2 + Math.max(0, n - 1));
  }

  /** A member's name and its colon; the separators were counted with the container. */
  #key(name: string): void {
    this.#add(jsonStringBytes(name, this.#l) + 1);
  }

  #string(s: string): string {
    if (s.length > this.#l.maxStringLength) throw new Overflow("string", s.length, this.#l.maxStringLength);
    this.#add(jsonStringBytes(s, this.#l));
    return s;
  }

  #stringOrNull(s: unknown): string | null {
    return typeof s === "string" ? this.#string(s) : this.#null();
  }

  #byteString(b: Uint8Array): string {
    const base64Length = 4 * Math.ceil(b.length / 3);
    if (base64Length > this.#l.maxStringLength) throw new Overflow("string", base64Length, this.#l.maxStringLength);
    return this.#string(Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64"));
  }

  #number(n: unknown): number | string | null {
    if (typeof n !== "number") return this.#null();
    if (!Number.isFinite(n)) return this.#string(String(n));
    this.#add(String(n).length);
    return n;
  }

  #bool(b: boolean): boolean {
    this.#add(b ? 4 : 5);
    return b;
  }

  #date(d: Date): string | null {
    return Number.isNaN(d.getTime()) ? this.#null() : this.#string(d.toISOString());
  }

  #null(): null {
    this.#add(4);
    return null;
  }

  #add(n: number): void {
    this.#bytes += n;
    if (this.#bytes > this.#l.maxItemBytes) throw new Overflow("bytes", this.#bytes, this.#l.maxItemBytes);
  }
}

/** UTF-8 bytes of `JSON.stringify(s)`; escapes (control characters, lone surrogates) included. */
function jsonStringBytes(s: string, l: ValueLimits): number {
  if (s.length > l.maxStringLength) throw new Overflow("string", s.length, l.maxStringLength);
  return Buffer.byteLength(JSON.stringify(s), "utf8");
}

function isVariant(v: object): v is Variant {
  const o = v as { dataType?: unknown; arrayType?: unknown };
  return typeof o.dataType === "number" && typeof o.arrayType === "number" && "value" in v;
}

function isNodeId(v: object): boolean {
  const o = v as { identifierType?: unknown; namespace?: unknown };
  return typeof o.identifierType === "number" && typeof o.namespace === "number";
}

/** node-opcua keeps 64-bit integers as [high, low] 32-bit words. */
function int64ToString(value: unknown, signed: boolean): string {
  if (typeof value === "bigint" || typeof value === "number") return String(value);
  if (Array.isArray(value) && value.length === 2) {
    const big = (BigInt(value[0] >>> 0) << 32n) | BigInt(value[1] >>> 0);
    return String(signed ? BigInt.asIntN(64, big) : big);
  }
  return String(value);
}
