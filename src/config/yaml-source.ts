import { isAlias, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, Scalar, type Document, type Node, type Pair, type YAMLError, type YAMLMap } from "yaml";
import { formatPath, truncate } from "./describe.ts";
import { indexPlainYaml, locatePlain, readPlainYaml, readPlainYamlIndexed, type PlainIndex } from "./yaml-quick.ts";

/** A parsed YAML file that can say where any path in its data was written. */
export interface YamlSource {
  /** The file name as shown in messages. */
  display: string;
  text: string;
  /** The document with source positions; read on first use after a plain file's quick read. */
  readonly doc: Document.Parsed;
  /** Syntax errors, one per problem; when there are any, `data` is undefined. */
  errors: YamlProblem[];
  data: unknown;
  /**
   * Where a data path was written: the offset of the value (or, with at "key", the key) of the
   * deepest part of the path that exists. A missing field thus points at the mapping that lacks
   * it. Each call costs the depth of the path, so that locating every error of a file is linear.
   */
  locate(path: readonly PropertyKey[], at: "value" | "key"): number;
  /** Line and column (from 1) of an offset. */
  position(offset: number): { line: number; col: number };
}

export interface YamlProblem {
  offset: number;
  path: string;
  message: string;
}

// Aliases could expand a small file into a huge object ("billion laughs"); yaml counts them.
const MAX_ALIAS_COUNT = 100;

// Far beyond any real config or mapping (100,000 data points are about 10 MB): positions are taken
// in the first read, as such a file rarely comes without errors, and a second read would cost seconds.
const INDEX_IN_FIRST_READ = 16 * 1024 * 1024;

export function parseYaml(display: string, text: string): YamlSource {
  const plain = text.length > INDEX_IN_FIRST_READ ? readPlainYamlIndexed(text) : { data: readPlainYaml(text), index: undefined };
  const data = plain?.data ?? null;
  if (data === null) return parseFully(display, text);
  let full: YamlSource | undefined;
  const fully = () => (full ??= parseFully(display, text));
  // Positions are read only when there is something to locate, and without `yaml`'s document.
  let index: PlainIndex | null | undefined = plain?.index;
  let starts: number[] | undefined;
  return {
    display,
    text,
    errors: [],
    data,
    get doc() {
      return fully().doc;
    },
    locate(path, at) {
      if (index === undefined) index = indexPlainYaml(text);
      return index ? locatePlain(index, path, at) : fully().locate(path, at);
    },
    position: (offset) => linePosition((starts ??= lineStarts(text)), offset),
  };
}

/** Every node with its source range: what messages that name a line need. */
export function parseFully(display: string, text: string): YamlSource {
  const lines = new LineCounter();
  // Duplicate keys are found below: yaml's own check compares every key with every other (quadratic).
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: false, strict: true });
  const keyIndex = new WeakMap<YAMLMap, Map<string, Pair>>();
  const source: YamlSource = {
    display,
    text,
    doc,
    errors: [],
    data: undefined,
    locate: (path, at) => locateInDocument(doc, keyIndex, path, at),
    position: (offset) => lines.linePos(offset),
  };
  const at = (offset: number, message: string, path: readonly PropertyKey[] = []) => {
    source.errors.push({ offset, path: formatPath(path), message });
  };
  const problems = [...doc.errors, ...doc.warnings];
  for (const e of problems) {
    // yaml reports a wrongly indented key twice, once as each of these
    if (e.code === "BLOCK_AS_IMPLICIT_KEY" && problems.some((o) => o.code === "MULTILINE_IMPLICIT_KEY" && o.pos[0] === e.pos[0])) continue;
    const { offset, message } = explainSyntax(doc, text, e, problems);
    // No field path: in a document that does not parse, any path would be a guess.
    at(offset, message);
  }
  visitMaps(doc.contents, [], (map, path) => {
    const seen = new Set<string>();
    for (const pair of map.items) {
      // toJS() would turn a list or mapping used as a key into "[object Object]"-like text.
      if (pair.key !== null && !isScalar(pair.key) && !isAlias(pair.key)) {
        at(rangeStart(pair.key as Node), "a key must be a plain name, not a list or mapping", path);
        continue;
      }
      const key = keyText(pair.key);
      if (key === undefined) continue;
      if (seen.has(key)) at(rangeStart(pair.key as Node), `duplicate key ${JSON.stringify(truncate(key, 40))} (expected each key once in a mapping)`, [...path, key]);
      seen.add(key);
    }
  });
  if (source.errors.length > 0) return source;
  try {
    source.data = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    // Unresolved or excessive aliases surface only here.
    at(0, `YAML error: ${firstLine((err as Error).message)}`);
  }
  return source;
}

/**
 * Where a syntax error was made, which is not always where yaml noticed it: an unclosed quote or
 * bracket is noticed at the end of the file or at the next line, a key indented too far on the
 * line before it.
 */
function explainSyntax(doc: Document.Parsed, text: string, e: YAMLError, all: readonly YAMLError[]): { offset: number; message: string } {
  const noticed = e.pos[0];
  const plain = { offset: noticed, message: `YAML ${e.name === "YAMLWarning" ? "problem" : "syntax error"}: ${firstLine(e.message)}` };
  if (e.code === "MISSING_CHAR" && /quote/.test(e.message)) {
    const quoted = lastNode(doc, (n) => isScalar(n) && (n.type === Scalar.QUOTE_DOUBLE || n.type === Scalar.QUOTE_SINGLE) && n.range![0] < noticed && n.range![1] >= noticed);
    if (!quoted) return plain;
    const q = text[quoted.range![0]];
    return { offset: quoted.range![0], message: `YAML syntax error: this quoted string has no closing ${q} (the rest of the file was read as part of it)` };
  }
  if (e.code === "BAD_INDENT" && /^Flow (sequence|map)/.test(e.message)) {
    const flow = lastNode(doc, (n) => (isSeq(n) || isMap(n)) && n.flow === true && n.range![0] < noticed && n.range![1] >= noticed);
    if (!flow) return plain;
    const [open, close] = isSeq(flow) ? ["[", "]"] : ["{", "}"];
    return { offset: flow.range![0], message: `YAML syntax error: this ${open} has no closing ${close} (expected ${close} before line ${lineOf(text, noticed)})` };
  }
  if (e.code === "MULTILINE_IMPLICIT_KEY") {
    const end = e.pos[1];
    const lineStart = text.lastIndexOf("\n", end - 1) + 1;
    const keyAt = lineStart + (/^[ \t]*/.exec(text.slice(lineStart, end))?.[0].length ?? 0);
    // After a key's value (a compact mapping), the later line is indented too far; at the start of a pair, the first line lacks its ':'.
    if (all.some((o) => o.code === "BLOCK_AS_IMPLICIT_KEY" && o.pos[0] === noticed)) {
      return { offset: keyAt, message: `YAML syntax error: bad indentation: this key is read as part of the value on line ${lineOf(text, noticed)} (indent it like the keys above it)` };
    }
    return { offset: noticed, message: `YAML syntax error: a key without ':' (this line and line ${lineOf(text, keyAt)} read as one key)` };
  }
  return plain;
}

function lineOf(text: string, offset: number): number {
  let line = 1;
  for (let i = text.indexOf("\n"); i >= 0 && i < offset; i = text.indexOf("\n", i + 1)) line++;
  return line;
}

/** The last node in document order that passes `test`. */
function lastNode(doc: Document.Parsed, test: (n: Node) => boolean): Node | undefined {
  let found: Node | undefined;
  const walk = (n: unknown, depth: number): void => {
    if (depth > 1000 || n === null || typeof n !== "object") return;
    if (isPair(n)) {
      walk(n.key, depth + 1);
      walk(n.value, depth + 1);
      return;
    }
    const node = n as Node;
    if (node.range && test(node)) found = node;
    if (isMap(node) || isSeq(node)) for (const item of node.items) walk(item, depth + 1);
  };
  walk(doc.contents, 0);
  return found;
}

function firstLine(text: string): string {
  return truncate(text.split("\n", 1)[0]!.trim(), 200);
}

function rangeStart(node: Node | null | undefined): number {
  return node?.range?.[0] ?? 0;
}

function visitMaps(node: unknown, path: PropertyKey[], visit: (map: YAMLMap, path: PropertyKey[]) => void, depth = 0): void {
  if (depth > 1000) return;
  if (isMap(node)) {
    visit(node, path);
    for (const pair of node.items) visitMaps(pair.value, [...path, keyText(pair.key) ?? "?"], visit, depth + 1);
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => visitMaps(isPair(item) ? item.value : item, [...path, i], visit, depth + 1));
  }
}

function keyText(key: unknown): string | undefined {
  return isScalar(key) ? String(key.value) : undefined;
}

function locateInDocument(doc: Document.Parsed, keyIndex: WeakMap<YAMLMap, Map<string, Pair>>, path: readonly PropertyKey[], at: "value" | "key"): number {
  let node: unknown = doc.contents;
  let offset = rangeStart(node as Node);
  for (let i = 0; i < path.length; i++) {
    if (isAlias(node)) node = node.resolve(doc);
    const seg = path[i];
    const last = i === path.length - 1;
    if (isMap(node)) {
      let keys = keyIndex.get(node);
      if (!keys) {
        keys = new Map();
        for (const p of node.items) {
          const k = keyText(p.key);
          if (k !== undefined && !keys.has(k)) keys.set(k, p);
        }
        keyIndex.set(node, keys);
      }
      const pair = keys.get(String(seg));
      if (!pair) break;
      const value = pair.value as Node | null;
      if ((last && at === "key") || !value?.range) {
        offset = rangeStart(pair.key as Node);
        if (!value?.range) break;
        continue;
      }
      node = value;
      offset = value.range[0];
    } else if (isSeq(node) && typeof seg === "number") {
      const item = node.items[seg] as Node | undefined;
      if (!item?.range) break;
      node = item;
      offset = item.range[0];
    } else {
      break;
    }
  }
  return offset;
}

/** Offsets at which lines start, for `linePosition`. */
function lineStarts(text: string): number[] {
  const starts = [0];
  for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", i + 1)) starts.push(i + 1);
  return starts;
}

function linePosition(starts: readonly number[], offset: number): { line: number; col: number } {
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (starts[mid]! <= offset) lo = mid;
    else hi = mid - 1;
  }
  return { line: lo + 1, col: offset - starts[lo]! + 1 };
}
