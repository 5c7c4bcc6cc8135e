import { KerfError } from "../../errors.ts";
/**
 * Finds where an encoded Variant ends (OPC UA Part 6, 5.2.2.16) without building it, however
 * deep it is nested: for a value node-opcua refuses to decode (deeper than 128 levels, an array
 * over its limit), so that the values after it in the same notification can still be read.
 *
 * Nothing is allocated per element: fixed-size elements are skipped in one step, and nesting
 * is a list of pending [kind, count] pairs instead of the call stack. Every step reads at
 * least one byte or fails, so the work is bounded by the buffer's length. Throws when the
 * bytes are not a well-formed Variant.
 */

const BYTES: Readonly<Record<number, number>> = {
  1: 1, // Boolean
  2: 1, // SByte
  3: 1, // Byte
  4: 2, // Int16
  5: 2, // UInt16
  6: 4, // Int32
  7: 4, // UInt32
  8: 8, // Int64
  9: 8, // UInt64
  10: 4, // Float
  11: 8, // Double
  13: 8, // DateTime
  14: 16, // Guid
  19: 4, // StatusCode
};
const DATA_VALUE = 23;
const VARIANT = 24;
const DIAGNOSTIC_INFO = 25;
/** An array's dimensions, which follow its elements. */
const DIMENSIONS = 26;
/** What follows a DataValue's Variant, plus its encoding mask. */
const DATA_VALUE_REST = 64;

/** The position just after the Variant that starts at `start`. */
export function skipVariant(buf: Buffer, start: number, end = buf.length): number {
  let pos = start;
  const skip = (n: number): void => {
    if (n < 0 || n > end - pos) throw new KerfError("OPCUA_DECODE", `not a well-formed Variant: ${n} bytes needed at ${pos}, ${end - pos} left`);
    pos += n;
  };
  const byte = (): number => {
    skip(1);
    return buf[pos - 1]!;
  };
  const int32 = (): number => {
    skip(4);
    return buf.readInt32LE(pos - 4);
  };
  /** String, ByteString, XmlElement, an ExtensionObject's body: a length (-1 for null) and bytes. */
  const bytes = (): void => {
    const n = int32();
    if (n < -1) throw new KerfError("OPCUA_DECODE", `not a well-formed Variant: length ${n} at ${pos - 4}`);
    if (n > 0) skip(n);
  };
  const nodeId = (expanded: boolean): void => {
    const b = byte();
    switch (b & 0x3f) {
      case 0:
        skip(1);
        break;
      case 1:
        skip(3);
        break;
      case 2:
        skip(6);
        break;
      case 3:
      case 5:
        skip(2);
        bytes();
        break;
      case 4:
        skip(18);
        break;
      default:
        throw new KerfError("OPCUA_DECODE", `not a well-formed Variant: NodeId encoding ${b} at ${pos - 1}`);
    }
    if (expanded && b & 0x80) bytes();
    if (expanded && b & 0x40) skip(4);
  };

  const pending: number[] = [VARIANT, 1];
  const push = (kind: number, count: number): void => {
    if (count > 0) pending.push(kind, count);
  };
  const elements = (type: number, n: number): void => {
    const size = BYTES[type];
    if (size !== undefined) return skip(size * n);
    switch (type) {
      case 0: // Null
        return;
      case DATA_VALUE:
      case VARIANT:
      case DIAGNOSTIC_INFO:
        // each takes at least one byte: more than are left is not an array
        if (n > end - pos) throw new KerfError("OPCUA_DECODE", `not a well-formed Variant: ${n} elements in ${end - pos} bytes`);
        return push(type, n);
    }
    for (let i = 0; i < n; i++) {
      switch (type) {
        case 12: // String
        case 15: // ByteString
        case 16: // XmlElement
          bytes();
          break;
        case 17: // NodeId
        case 18: // ExpandedNodeId
          nodeId(type === 18);
          break;
        case 20: // QualifiedName
          skip(2);
          bytes();
          break;
        case 21: {
          // LocalizedText
          const mask = byte();
          if (mask & 0x01) bytes();
          if (mask & 0x02) bytes();
          break;
        }
        case 22: {
          // ExtensionObject: its body carries its length
          nodeId(false);
          const encoding = byte();
          if (encoding === 1 || encoding === 2) bytes();
          else if (encoding !== 0) throw new KerfError("OPCUA_DECODE", `not a well-formed Variant: ExtensionObject encoding ${encoding} at ${pos - 1}`);
          break;
        }
        default:
          throw new KerfError("OPCUA_DECODE", `not a well-formed Variant: type ${type} at ${pos}`);
      }
    }
  };

  while (pending.length > 0) {
    const top = pending.length - 2;
    const kind = pending[top]!;
    // taking the last one of this entry removes it, so a chain of nested values does not pile up
    if (--pending[top + 1]! === 0) pending.length = top;
    if (kind >= DATA_VALUE_REST) {
      const mask = kind - DATA_VALUE_REST;
      skip((mask & 0x02 ? 4 : 0) + (mask & 0x04 ? 8 : 0) + (mask & 0x10 ? 2 : 0) + (mask & 0x08 ? 8 : 0) + (mask & 0x20 ? 2 : 0));
      continue;
    }
    switch (kind) {
      case VARIANT: {
        const b = byte();
        const type = b & 0x3f;
        if (b & 0x40) push(DIMENSIONS, 1);
        if (b & 0x80) {
          const n = int32();
          if (n < -1) throw new KerfError("OPCUA_DECODE", `not a well-formed Variant: array length ${n} at ${pos - 4}`);
          if (n > 0) elements(type, n);
        } else {
          elements(type, 1);
        }
        break;
      }
      case DATA_VALUE: {
        const mask = byte();
        push(DATA_VALUE_REST + (mask & 0x3e), 1);
        if (mask & 0x01) push(VARIANT, 1);
        break;
      }
      case DIAGNOSTIC_INFO: {
        const mask = byte();
        skip((mask & 0x01 ? 4 : 0) + (mask & 0x02 ? 4 : 0) + (mask & 0x08 ? 4 : 0) + (mask & 0x04 ? 4 : 0));
        if (mask & 0x10) bytes();
        if (mask & 0x20) skip(4);
        if (mask & 0x40) push(DIAGNOSTIC_INFO, 1);
        break;
      }
      case DIMENSIONS: {
        const n = int32();
        if (n > 0) skip(4 * n);
        break;
      }
    }
  }
  return pos;
}
