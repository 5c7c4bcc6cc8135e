import { KerfError } from "../errors.ts";

/**
 * Browse paths in the mapping, the relative-path text form of OPC UA Part 4 Annex A.2 with one
 * addition for namespace URIs. It imports nothing from node-opcua, so the config schema can
 * check paths at load time.
 *
 *   path     = element { element }
 *   element  = ("/" | ".") [ prefix ] name
 *   prefix   = <index> ":"            e.g. /2:Machine      (namespace index, as in Part 4)
 *            | "<nsu=" <uri> ">"      e.g. /<nsu=urn:kerf:simulator>Machine
 *
 * "/" follows any hierarchical reference (Organizes, HasComponent, …), "." only aggregates
 * (HasComponent, HasProperty). A name without prefix is in namespace 0. `&` escapes the next
 * character, for names that contain / . < > : or &. Part 4's `<ReferenceType>` elements are
 * not supported; the nsu form is why: an index can differ between servers and restarts.
 */
export interface BrowsePathElement {
  reference: "hierarchical" | "aggregates";
  /** Namespace index, or its URI when written as <nsu=…>. */
  namespace: number | string;
  name: string;
}

const MAX_ELEMENTS = 64;
const MAX_NAME = 512;
const FORM = "elements like /2:Name, .Name or /<nsu=urn:example>Name";

function fail(text: string, problem: string): never {
  throw new KerfError("MAPPING_INVALID", `browse path ${JSON.stringify(text.length > 120 ? `${text.slice(0, 117)}...` : text)}: ${problem}`);
}

export function parseBrowsePath(text: string): BrowsePathElement[] {
  if (typeof text !== "string" || text === "") fail(String(text), `empty (expected ${FORM})`);
  const elements: BrowsePathElement[] = [];
  let i = 0;
  while (i < text.length) {
    const delimiter = text[i];
    if (delimiter !== "/" && delimiter !== ".") fail(text, `found ${JSON.stringify(delimiter)} at position ${i + 1} (expected '/' or '.' before each element: ${FORM})`);
    i++;
    let namespace: number | string = 0;
    const index = /^(\d{1,5}):/.exec(text.slice(i));
    if (index) {
      namespace = Number(index[1]);
      if (namespace > 65535) fail(text, `namespace index ${namespace} is out of range (expected 0..65535)`);
      i += index[0].length;
    } else if (text.startsWith("<", i)) {
      const end = text.indexOf(">", i);
      const inner = end < 0 ? text.slice(i + 1) : text.slice(i + 1, end);
      if (!inner.startsWith("nsu=") || end < 0) fail(text, `found <${inner}${end < 0 ? "" : ">"} (expected <nsu=<namespace uri>> before a name; reference types are not supported, use '/' or '.')`);
      namespace = inner.slice(4);
      if (namespace.trim() === "") fail(text, "empty namespace URI in <nsu=> (expected <nsu=urn:example>Name)");
      i = end + 1;
    }
    let name = "";
    while (i < text.length && text[i] !== "/" && text[i] !== ".") {
      const c = text[i]!;
      if (c === "&") {
        if (i + 1 >= text.length) fail(text, "ends with '&' (expected a character after '&')");
        name += text[i + 1];
        i += 2;
        continue;
      }
      if (c === "<" || c === ">") fail(text, `found ${JSON.stringify(c)} inside a name (escape it as &${c}; <nsu=…> goes right after '/' or '.')`);
      name += c;
      i++;
    }
    if (name === "") fail(text, `element ${elements.length + 1} has no name (expected ${FORM})`);
    if (name.length > MAX_NAME) fail(text, `element ${elements.length + 1} has a name of ${name.length} characters (expected at most ${MAX_NAME})`);
    elements.push({ reference: delimiter === "/" ? "hierarchical" : "aggregates", namespace, name });
    if (elements.length > MAX_ELEMENTS) fail(text, `more than ${MAX_ELEMENTS} elements`);
  }
  return elements;
}

/**
 * A select clause of an event subscription: browse names relative to the event type, such
 * as "Message" or "ActiveState/Id" ("ActiveState.Id" works too). The leading '/' is optional.
 */
export function parseSelectPath(text: string): BrowsePathElement[] {
  if (typeof text === "string" && text !== "" && text[0] !== "/" && text[0] !== ".") return parseBrowsePath(`/${text}`);
  return parseBrowsePath(text);
}

/** The namespace index of an element on this server; throws when the server lacks its URI. */
export function namespaceIndex(element: BrowsePathElement, namespaceArray: readonly string[]): number {
  if (typeof element.namespace === "number") return element.namespace;
  const index = namespaceArray.indexOf(element.namespace);
  if (index < 0) throw new KerfError("OPCUA_NODE", `the server has no namespace '${element.namespace}' (browse name ${element.name})`);
  return index;
}
