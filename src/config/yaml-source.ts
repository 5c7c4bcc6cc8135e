import { isAlias, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from "yaml";
import { formatPath, truncate } from "./describe.ts";
import { readPlainYaml } from "./yaml-quick.ts";

/** A parsed YAML file that can say where any path in its data was written. */
export interface YamlSource {
  /** The file name as shown in messages. */
  display: string;
  /** The document with source positions; read on first use after a plain file's quick read. */
  readonly doc: Document.Parsed;
  readonly lines: LineCounter;
  /** Syntax errors, one per problem; when there are any, `data` is undefined. */
  errors: YamlProblem[];
  data: unknown;
}

export interface YamlProblem {
  line: number;
  col: number;
  path: string;
  message: string;
}

// Aliases could expand a small file into a huge object ("billion laughs"); yaml counts them.
const MAX_ALIAS_COUNT = 100;

export function parseYaml(display: string, text: string): YamlSource {
  const data = readPlainYaml(text);
  if (data === null) return parseFully(display, text);
  let full: YamlSource | undefined;
  const positions = () => (full ??= parseFully(display, text));
  return {
    display,
    errors: [],
    data,
    get doc() {
      return positions().doc;
    },
    get lines() {
      return positions().lines;
    },
  };
}

/** Every node with its source range: what messages that name a line need. */
export function parseFully(display: string, text: string): YamlSource {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true, strict: true });
  const source: YamlSource = { display, doc, lines, errors: [], data: undefined };
  const at = (offset: number, message: string, path = pathAtOffset(doc, offset)) => {
    const { line, col } = lines.linePos(offset);
    source.errors.push({ line, col, path: formatPath(path), message });
  };
  for (const e of [...doc.errors, ...doc.warnings]) {
    if (e.code === "DUPLICATE_KEY") {
      at(e.pos[0], `duplicate key ${JSON.stringify(truncate(keyAt(doc, e.pos[0]) ?? "?", 40))} (expected each key once in a mapping)`);
    } else {
      // No field path: in a document that does not parse, any path would be a guess.
      at(e.pos[0], `YAML ${e.name === "YAMLWarning" ? "problem" : "syntax error"}: ${firstLine(e.message)}`, []);
    }
  }
  if (source.errors.length > 0) return source;
  // toJS() would turn a list or mapping used as a key into "[object Object]"-like text.
  visitPairs(doc.contents, (pair) => {
    if (pair.key !== null && !isScalar(pair.key) && !isAlias(pair.key)) {
      at(rangeStart(pair.key as Node), "a key must be a plain name, not a list or mapping");
    }
  });
  if (source.errors.length > 0) return source;
  try {
    source.data = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    // Unresolved or excessive aliases surface only here.
    at(0, `YAML error: ${firstLine((err as Error).message)}`, []);
  }
  return source;
}

function firstLine(text: string): string {
  return truncate(text.split("\n", 1)[0]!.trim(), 200);
}

function rangeStart(node: Node | null | undefined): number {
  return node?.range?.[0] ?? 0;
}

type AnyNode = Node | null | undefined | unknown;

function visitPairs(node: AnyNode, visit: (pair: { key: unknown; value: unknown }) => void, depth = 0): void {
  if (depth > 1000) return;
  if (isMap(node)) {
    for (const pair of node.items) {
      visit(pair);
      visitPairs(pair.value, visit, depth + 1);
    }
  } else if (isSeq(node)) {
    for (const item of node.items) {
      if (isPair(item)) visitPairs(item.value, visit, depth + 1);
      else visitPairs(item, visit, depth + 1);
    }
  }
}

/** The text of the mapping key that starts at `offset`. */
function keyAt(doc: Document.Parsed, offset: number): string | undefined {
  let text: string | undefined;
  visitPairs(doc.contents, (pair) => {
    if (text === undefined && (pair.key as Node | null)?.range?.[0] === offset) text = keyText(pair.key);
  });
  return text;
}

function keyText(key: unknown): string | undefined {
  return isScalar(key) ? String(key.value) : undefined;
}

/** The data path of the innermost node that contains `offset`, for messages about syntax errors. */
function pathAtOffset(doc: Document.Parsed, offset: number): PropertyKey[] {
  const path: PropertyKey[] = [];
  let node: unknown = doc.contents;
  for (let depth = 0; depth < 1000; depth++) {
    let next: unknown;
    if (isMap(node)) {
      for (const pair of node.items) {
        const start = rangeStart(pair.key as Node);
        const value = pair.value as Node | null;
        const end = value?.range?.[2] ?? (pair.key as Node | null)?.range?.[2] ?? start;
        if (offset >= start && offset <= end) {
          const k = keyText(pair.key);
          if (k === undefined) return path;
          path.push(k);
          next = value;
          break;
        }
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => {
        const r = (item as Node | null)?.range;
        if (next === undefined && r && offset >= r[0] && offset <= r[2]) {
          path.push(i);
          next = item;
        }
      });
    }
    if (next === undefined || next === null) return path;
    node = next;
  }
  return path;
}

/**
 * Where a data path was written: the value node (or, with at "key", the key) of the deepest
 * part of the path that exists. A missing field thus points at the mapping that lacks it.
 */
export function locate(source: YamlSource, path: readonly PropertyKey[], at: "value" | "key"): { line: number; col: number } {
  let node: unknown = source.doc.contents;
  let offset = rangeStart(node as Node);
  for (let i = 0; i < path.length; i++) {
    if (isAlias(node)) node = node.resolve(source.doc);
    const seg = path[i];
    const last = i === path.length - 1;
    if (isMap(node)) {
      const pair = node.items.find((p) => keyText(p.key) === String(seg));
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
  return source.lines.linePos(offset);
}
