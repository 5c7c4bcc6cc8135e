import { DataType, VariantArrayType, type DataValue, type Variant } from "node-opcua-client";

/**
 * Turns an OPC UA value into the JSON-safe form of docs/protocol.md. JSON has no 64-bit
 * integers, no bytes and no NaN, so those get a lossless string form rather than a silent
 * rounding or a null.
 */
export function encodeVariant(variant: Variant | null | undefined): unknown {
  if (!variant || variant.dataType === DataType.Null) return null;
  if (variant.arrayType !== VariantArrayType.Scalar && variant.value != null) {
    const list = Array.from(variant.value as ArrayLike<unknown>, (v) => encodeScalar(variant.dataType, v));
    return list;
  }
  return encodeScalar(variant.dataType, variant.value);
}

function encodeScalar(type: DataType, value: unknown): unknown {
  if (value === null || value === undefined) return null;
  switch (type) {
    case DataType.Int64:
    case DataType.UInt64:
      return int64ToString(value, type === DataType.Int64);
    case DataType.Float:
    case DataType.Double:
      return Number.isFinite(value as number) ? value : String(value);
    case DataType.ByteString:
      return Buffer.isBuffer(value) ? value.toString("base64") : null;
    case DataType.DateTime:
      return value instanceof Date && !Number.isNaN(value.getTime()) ? value.toISOString() : null;
    case DataType.LocalizedText:
      return (value as { text?: string | null }).text ?? null;
    case DataType.QualifiedName:
      return (value as { name?: string | null }).name ?? null;
    case DataType.NodeId:
    case DataType.ExpandedNodeId:
    case DataType.Guid:
    case DataType.StatusCode:
      return type === DataType.StatusCode ? (value as { value: number }).value : String(value);
    case DataType.ExtensionObject:
    case DataType.Variant:
    case DataType.DiagnosticInfo:
    case DataType.DataValue:
    case DataType.XmlElement:
      return toPlain(value);
    default:
      return value;
  }
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

function toPlain(value: unknown): unknown {
  const json = (value as { toJSON?: () => unknown }).toJSON?.() ?? value;
  // Round-trip through JSON so that only plain data (no prototypes) leaves the OPC UA layer.
  return JSON.parse(JSON.stringify(json, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v)) ?? "null");
}

export function dataValueTime(dv: DataValue): string {
  const t = dv.sourceTimestamp ?? dv.serverTimestamp;
  return (t && !Number.isNaN(t.getTime()) ? t : new Date()).toISOString();
}
