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
  if (BEYOND_PLAIN.some((re) => re.test(text))) return null;
  let data: unknown;
  try {
    // json: false refuses duplicate keys, as `yaml` does with uniqueKeys
    data = jsYaml.load(text, { schema: CORE, json: false });
  } catch {
    return null;
  }
  if (typeof data !== "object" || data === null || Array.isArray(data) || hasNullKey(data)) return null;
  return data as Record<string, unknown>;
}

/** js-yaml turns a null key into "null", `yaml` into "" (and a quoted "null" looks the same here). */
function hasNullKey(value: unknown, depth = 0): boolean {
  if (typeof value !== "object" || value === null || depth > 1000) return false;
  if (Array.isArray(value)) return value.some((v) => hasNullKey(v, depth + 1));
  for (const [k, v] of Object.entries(value)) if (k === "null" || hasNullKey(v, depth + 1)) return true;
  return false;
}
