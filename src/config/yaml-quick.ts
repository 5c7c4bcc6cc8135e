import jsYaml from "js-yaml";

/*
 * The `yaml` package keeps a node with source ranges for every scalar, which is what lets
 * every message name a line; for a mapping of 100,000 data points that is 330 MB and 3 s.
 * js-yaml builds the plain values directly (35 MB, 0.3 s). It reads a plain document here,
 * and `yaml` still reads any file that uses more of YAML, and any file with a problem, so that
 * messages and results stay those of one parser. Tested against `yaml` on generated files.
 */

// YAML 1.2 core schema resolution exactly as the `yaml` package does it (its schema/core).
const NULL = /^(?:~|[Nn]ull|NULL)?$/;
const BOOL = /^(?:[Tt]rue|TRUE|[Ff]alse|FALSE)$/;
const INT_OCT = /^0o[0-7]+$/;
const INT = /^[-+]?[0-9]+$/;
const INT_HEX = /^0x[0-9a-fA-F]+$/;
const FLOAT_NAN = /^(?:[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN)$/;
const FLOAT_EXP = /^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$/;
const FLOAT = /^[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*)$/;

const CORE = jsYaml.FAILSAFE_SCHEMA.extend({
  implicit: [
    new jsYaml.Type("tag:yaml.org,2002:null", { kind: "scalar", resolve: (s: string | null) => s === null || NULL.test(s), construct: () => null }),
    new jsYaml.Type("tag:yaml.org,2002:bool", { kind: "scalar", resolve: (s: string | null) => s !== null && BOOL.test(s), construct: (s: string) => s[0] === "t" || s[0] === "T" }),
    new jsYaml.Type("tag:yaml.org,2002:int", {
      kind: "scalar",
      resolve: (s: string | null) => s !== null && (INT_OCT.test(s) || INT.test(s) || INT_HEX.test(s)),
      construct: (s: string) => (INT_OCT.test(s) ? parseInt(s.slice(2), 8) : INT.test(s) ? parseInt(s, 10) : parseInt(s.slice(2), 16)),
    }),
    new jsYaml.Type("tag:yaml.org,2002:float", {
      kind: "scalar",
      resolve: (s: string | null) => s !== null && (FLOAT_NAN.test(s) || FLOAT_EXP.test(s) || FLOAT.test(s)),
      construct: (s: string) => (FLOAT_NAN.test(s) ? (s.slice(-3).toLowerCase() === "nan" ? NaN : s[0] === "-" ? -Infinity : Infinity) : parseFloat(s)),
    }),
  ],
});

/**
 * Where the two parsers could read a text differently, or where only `yaml` guards against
 * abuse: directives, tags, anchors and aliases (alias bombs), keys that are lists or mappings
 * (js-yaml turns them into text), and tabs. A false alarm only costs time.
 */
const BEYOND_PLAIN = [
  /^%/m,
  /(?:^|[\s,[\]{}])[!&*]/,
  /^[\t ]*(?:-[\t ]+)*[?[{]/m,
  /[{,][\t ]*[[{?]/,
  /\t/,
];

/** The data of a plain YAML document whose top level is a mapping; null when `yaml` must read it. */
export function readPlainYaml(text: string): Record<string, unknown> | null {
  return readPlain(text, false)?.data ?? null;
}

/** The same, with the offsets of its keys and values taken in the same pass (see indexPlainYaml). */
export function readPlainYamlIndexed(text: string): { data: Record<string, unknown>; index: PlainIndex | null } | null {
  return readPlain(text, true);
}

function readPlain(text: string, withIndex: boolean): { data: Record<string, unknown>; index: PlainIndex | null } | null {
  if (BEYOND_PLAIN.some((re) => re.test(text))) return null;
  const indexer = withIndex ? positionIndexer(text) : undefined;
  let data: unknown;
  try {
    // json: false refuses duplicate keys, as `yaml` does with uniqueKeys
    data = jsYaml.load(text, { schema: CORE, json: false, ...(indexer ? { listener: indexer.listener } : {}) });
  } catch {
    return null;
  }
  if (typeof data !== "object" || data === null || Array.isArray(data) || hasNullKey(data)) return null;
  return { data: data as Record<string, unknown>, index: indexer?.result() ?? null };
}

/**
 * js-yaml turns a null key into "null", `yaml` into "" (and a quoted "null" looks the same here).
 * The walk takes 3–10 ms for a 100,000-item mapping; a regular expression that looked for
 * possible null keys in the text first took 60 ms.
 */
function hasNullKey(value: unknown, depth = 0): boolean {
  if (typeof value !== "object" || value === null || depth > 1000) return false;
  if (Array.isArray(value)) return value.some((v) => hasNullKey(v, depth + 1));
  if (Object.hasOwn(value, "null")) return true;
  for (const k in value) {
    const v = (value as Record<string, unknown>)[k];
    if (typeof v === "object" && v !== null && hasNullKey(v, depth + 1)) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Where a plain document's keys and values were written

/** A mapping's pairs in the order written: each key's and value's offset, and the value's own record when it is a mapping or list. */
interface MapRecord {
  keys: string[];
  keyAt: number[];
  valueAt: number[];
  values: (PlainRecord | undefined)[];
  /** Built on the first look-up, so that each look-up is O(1) and locating every error is linear. */
  byKey?: Map<string, number>;
}

interface ListRecord {
  itemAt: number[];
  items: (PlainRecord | undefined)[];
}

type PlainRecord = MapRecord | ListRecord;

export interface PlainIndex {
  rootAt: number;
  root: PlainRecord | undefined;
}

/** The children of the nodes still open, one after another; a node's own start where they begin. */
interface Children {
  at: number[];
  results: unknown[];
  records: (PlainRecord | undefined)[];
}

/**
 * Offsets of a plain document's keys and values, from js-yaml's node events: what lets an error
 * in a 64 MB file name its line without the `yaml` package's node per scalar (about 30 bytes
 * of memory per byte of file). The offsets are those `yaml` gives (tested on generated files);
 * null where the events do not line up with the data (an empty list item, `{a}`): `yaml` then locates.
 */
export function indexPlainYaml(text: string): PlainIndex | null {
  const indexer = positionIndexer(text);
  try {
    jsYaml.load(text, { schema: CORE, json: false, listener: indexer.listener });
  } catch {
    return null;
  }
  return indexer.result();
}

function positionIndexer(text: string) {
  // js-yaml drops a byte-order mark before it counts
  const shift = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  // Open nodes as two number stacks and their children in shared lists: a scalar allocates nothing.
  const openAt: number[] = [];
  const openFrom: number[] = [];
  const children: Children = { at: [], results: [], records: [] };
  let index: PlainIndex | undefined;
  let lined = true;
  const listener = (event: string, state: { position: number; kind: string | null; result: unknown }) => {
    if (event === "open") {
      openAt.push(state.position + shift);
      openFrom.push(children.at.length);
      return;
    }
    const start = openAt.pop()!;
    const from = openFrom.pop()!;
    let record: PlainRecord | undefined;
    if (state.kind === "mapping" || state.kind === "sequence") {
      // A collection read where a key could have started comes wrapped in one more node.
      if (children.at.length - from === 1 && children.results[from] === state.result) record = children.records[from];
      else record = (state.kind === "mapping" ? mapRecord(children, from) : listRecord(children, from, state.result as unknown[])) ?? undefined;
      if (record === undefined) lined = false;
    }
    children.at.length = children.results.length = children.records.length = from;
    // An empty value is where the colon left off; any other node starts at its first character.
    const at = skip(text, start, state.kind !== null);
    if (openAt.length > 0) {
      children.at.push(at);
      children.results.push(state.result);
      children.records.push(record);
    } else index = { rootAt: at, root: record };
  };
  return { listener, result: (): PlainIndex | null => (lined && index ? index : null) };
}

function mapRecord(children: Children, from: number): MapRecord | null {
  const n = children.at.length - from;
  if (n % 2 !== 0) return null;
  const record: MapRecord = { keys: new Array(n / 2), keyAt: new Array(n / 2), valueAt: new Array(n / 2), values: new Array(n / 2) };
  for (let i = 0; i < n / 2; i++) {
    record.keys[i] = String(children.results[from + 2 * i]);
    record.keyAt[i] = children.at[from + 2 * i]!;
    record.valueAt[i] = children.at[from + 2 * i + 1]!;
    record.values[i] = children.records[from + 2 * i + 1];
  }
  return record;
}

function listRecord(children: Children, from: number, list: unknown[]): ListRecord | null {
  if (children.at.length - from !== list.length) return null;
  return { itemAt: children.at.slice(from), items: children.records.slice(from) };
}

/** Past spaces and tabs, and with `lines` also past line breaks and comments. */
function skip(text: string, at: number, lines: boolean): number {
  let i = at;
  for (;;) {
    const c = text.charCodeAt(i);
    if (c === 0x20 || c === 0x09) i++;
    else if (lines && (c === 0x0a || c === 0x0d)) i++;
    else if (lines && c === 0x23 /* # */) {
      const end = text.indexOf("\n", i);
      i = end < 0 ? text.length : end;
    } else return i;
  }
}

/** The offset where `path` was written (see yaml-source.ts `locate` for the rules). */
export function locatePlain(index: PlainIndex, path: readonly PropertyKey[], at: "value" | "key"): number {
  let record = index.root;
  let offset = index.rootAt;
  for (let i = 0; i < path.length && record; i++) {
    const seg = path[i];
    if ("keys" in record) {
      record.byKey ??= keyIndex(record.keys);
      const j = record.byKey.get(String(seg));
      if (j === undefined) break;
      if (i === path.length - 1 && at === "key") return record.keyAt[j]!;
      offset = record.valueAt[j]!;
      record = record.values[j];
    } else if (typeof seg === "number" && seg < record.itemAt.length) {
      offset = record.itemAt[seg]!;
      record = record.items[seg];
    } else break;
  }
  return offset;
}

function keyIndex(keys: readonly string[]): Map<string, number> {
  const index = new Map<string, number>();
  for (let j = 0; j < keys.length; j++) index.set(keys[j]!, j);
  return index;
}
