import { DataType } from "node-opcua-client";

/** The OPC UA number types (Int64 and UInt64 travel as decimal strings, see encode.ts). */
export const NUMERIC: ReadonlySet<DataType> = new Set<DataType>([
  DataType.SByte,
  DataType.Byte,
  DataType.Int16,
  DataType.UInt16,
  DataType.Int32,
  DataType.UInt32,
  DataType.Int64,
  DataType.UInt64,
  DataType.Float,
  DataType.Double,
]);

/**
 * v' = v × scale + offset on an already encoded value (see encode.ts), elementwise on arrays.
 * Int64 values arrive as decimal strings and leave as numbers: a scaled value is a measurement,
 * and beyond 2^53 it loses precision like any double. A result that is not finite keeps the
 * string form encode.ts uses ("NaN", "Infinity"). `ok` is false when the type is not numeric;
 * the value is then passed on unchanged.
 */
export function scaleValue(encoded: unknown, dataType: DataType, scale: number, offset: number): { v: unknown; ok: boolean } {
  if (encoded === null) return { v: null, ok: true };
  if (!NUMERIC.has(dataType)) return { v: encoded, ok: false };
  const one = (x: unknown): unknown => {
    if (x === null) return null;
    const n = typeof x === "number" ? x : typeof x === "string" ? Number(x) : NaN;
    const r = n * scale + offset;
    return Number.isFinite(r) ? r : String(r);
  };
  return { v: Array.isArray(encoded) ? encoded.map(one) : one(encoded), ok: true };
}
