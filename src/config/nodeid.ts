import { KerfError } from "../errors.ts";
import { truncate } from "./describe.ts";

/**
 * OPC UA NodeIds in their string form (OPC UA Part 6 §5.3.1.10):
 *   [ns=<index>;|nsu=<uri>;](i=<uint32>|s=<string>|g=<guid>|b=<base64>)
 * Without a prefix the namespace is 0. The server resolves a namespace URI to its index at
 * connect time, which is why a mapping should prefer nsu= (indexes can differ between servers).
 */
export interface ParsedNodeId {
  /** Namespace index, or namespace URI when written as nsu=. */
  namespace: number | string;
  identifierType: "i" | "s" | "g" | "b";
  /** The identifier as text: decimal for i=, lower-case for g=, as written for s= and b=. */
  value: string;
}

const MAX_UINT32 = 4294967295;
const MAX_NAMESPACE = 65535;
// OPC UA limits String and ByteString identifiers to 4096 bytes.
const MAX_ID_BYTES = 4096;
const GUID = /^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const FORMS = "i=<integer>, s=<string>, g=<GUID> or b=<base64>, optionally after ns=<index>; or nsu=<uri>;";

function fail(message: string): never {
  throw new KerfError("MAPPING_INVALID", message);
}

function show(text: string): string {
  return JSON.stringify(truncate(text)).slice(1, -1);
}

/** Parses a NodeId string; throws a KerfError that says what is wrong and what was found. */
export function parseNodeIdString(text: string): ParsedNodeId {
  if (typeof text !== "string") fail(`a node id must be a string, found ${typeof text}`);
  let rest = text;
  let namespace: number | string = 0;

  if (rest.startsWith("ns=")) {
    const semi = rest.indexOf(";");
    if (semi < 0) fail(`ns= must be followed by ';' and an identifier, as in 'ns=2;s=Name', found '${show(text)}'`);
    const index = rest.slice(3, semi);
    if (!/^\d{1,5}$/.test(index) || Number(index) > MAX_NAMESPACE) {
      fail(`ns= needs a namespace index 0..${MAX_NAMESPACE}, found '${show(index)}'`);
    }
    namespace = Number(index);
    rest = rest.slice(semi + 1);
  } else if (rest.startsWith("nsu=")) {
    // The URI ends at the first ';' that starts an identifier; URIs may themselves contain ';'.
    const end = rest.search(/;[isgb]=/);
    if (end < 0) fail(`nsu= must be followed by ';' and an identifier, as in 'nsu=http://example.com/UA/;i=1001', found '${show(text)}'`);
    const uri = rest.slice(4, end);
    if (uri.trim() === "") fail(`nsu= needs a namespace URI, found an empty one in '${show(text)}'`);
    namespace = uri;
    rest = rest.slice(end + 1);
  }

  const type = rest[0];
  if (rest[1] !== "=" || (type !== "i" && type !== "s" && type !== "g" && type !== "b")) {
    fail(`not a node id: expected ${FORMS} found '${show(text)}'`);
  }
  const value = rest.slice(2);
  switch (type) {
    case "i":
      if (!/^\d{1,10}$/.test(value) || Number(value) > MAX_UINT32) fail(`i= needs an integer 0..${MAX_UINT32}, found '${show(value)}'`);
      return { namespace, identifierType: "i", value: String(Number(value)) };
    case "s":
      if (value === "") fail(`s= needs a non-empty string, found nothing after 's=' in '${show(text)}'`);
      if (Buffer.byteLength(value) > MAX_ID_BYTES) fail(`s= identifiers are limited to ${MAX_ID_BYTES} bytes, found ${Buffer.byteLength(value)}`);
      return { namespace, identifierType: "s", value };
    case "g":
      if (!GUID.test(value)) fail(`g= needs a GUID like 72962b91-fa75-4ae6-8d28-b404dc7daf63, found '${show(value)}'`);
      return { namespace, identifierType: "g", value: value.toLowerCase() };
    case "b": {
      if (value === "" || !BASE64.test(value)) fail(`b= needs non-empty base64 (A-Z a-z 0-9 + /, padded with =), found '${show(value)}'`);
      const bytes = Buffer.from(value, "base64").length;
      if (bytes > MAX_ID_BYTES) fail(`b= identifiers are limited to ${MAX_ID_BYTES} bytes, found ${bytes}`);
      return { namespace, identifierType: "b", value };
    }
  }
}

/**
 * One text per node id as written, for comparing them: "i=85" and "ns=0;i=85" give the same,
 * GUIDs compare without case. An nsu= form and an ns= form of one node differ here: only the
 * server's namespace table can tell that they are the same node.
 */
export function nodeIdKey(text: string): string {
  const id = parseNodeIdString(text);
  return `${typeof id.namespace === "number" ? `ns=${id.namespace}` : `nsu=${id.namespace}`};${id.identifierType}=${id.value}`;
}
