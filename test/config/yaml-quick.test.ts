import { inspect, isDeepStrictEqual } from "node:util";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { indexPlainYaml, locatePlain, readPlainYaml, readPlainYamlIndexed } from "../../src/config/yaml-quick.ts";
import { parseFully, parseYaml } from "../../src/config/yaml-source.ts";

// Plain scalars where YAML 1.1, 1.2 and the two parsers' schemas are known to part ways.
const TRICKY = [
  "1", "-1", "+1", "007", "1_000", "0b101", "0x1F", "0X1F", "-0x1F", "0o17", "0o8", "017", ".5", "1.", "-.5", "1e3", "1E-3", ".1e2", "1.5e", "1:30",
  ".inf", "-.Inf", "+.INF", ".NaN", ".nan", "NaN", "~", "null", "Null", "NULL", "nULL", "true", "True", "TRUE", "tRUE", "false", "yes", "No", "on", "OFF", "y", "n",
  "2026-01-01", "2026-01-01T10:00:00Z", "=", "<<", "__proto__", "constructor", "a b", "a:b", "http://x", "ns=2;s=A.B", "nsu=urn:x;i=5", "s=Tank[0]", "ü€𝄞", "a\\nb",
];
const QUOTED = ['""', "''", '"1"', "'true'", '"a\\tb"', '"\\u00fc"', "'it''s'", '"#x"', "'a: b'"];
const scalar = fc.oneof(fc.constantFrom(...TRICKY), fc.constantFrom(...QUOTED), fc.stringMatching(/^[a-z][a-z0-9._-]{0,8}$/), fc.integer().map(String), fc.double().map(String));
const key = fc.oneof({ weight: 6, arbitrary: fc.stringMatching(/^[a-z][a-zA-Z0-9._-]{0,10}$/) }, fc.constantFrom(...TRICKY, ...QUOTED));

type Tree = string | Tree[] | [string, Tree][] | { flow: string };
const tree: fc.Arbitrary<Tree> = fc.letrec<{ node: Tree }>((tie) => ({
  node: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    scalar,
    fc.array(tie("node"), { maxLength: 4 }),
    fc.uniqueArray(fc.tuple(key, tie("node")), { maxLength: 4, selector: ([k]) => k }),
    fc.constantFrom("[]", "{}", "[a, 1, true]", "{a: 1, b: null}", "[a, [b]]", "{a: {b: c}}", "|\n  line\n", ">-\n  folded\n  text\n").map((flow) => ({ flow })),
  ),
})).node;

function render(t: Tree, indent: string): string {
  if (typeof t === "string") return ` ${t}\n`;
  if (!Array.isArray(t)) return ` ${t.flow.replaceAll("\n", `\n${indent}`).trimEnd()}\n`;
  if (t.length === 0) return " []\n";
  const inner = indent + "  ";
  if (typeof t[0] === "object" && Array.isArray(t[0]) && t[0].length === 2 && typeof t[0][0] === "string" && !isTreeList(t)) {
    return "\n" + (t as [string, Tree][]).map(([k, v]) => `${inner}${k}:${render(v, inner)}`).join("");
  }
  return "\n" + (t as Tree[]).map((v) => `${inner}-${render(v, inner)}`).join("");
}
// a list of pairs (a mapping) and a list of two-element lists look alike; the generator marks mappings by string keys
function isTreeList(t: Tree[]): boolean {
  return !t.every((e) => Array.isArray(e) && e.length === 2 && typeof e[0] === "string" && !Array.isArray(e[1]) === !Array.isArray(e[1]));
}

describe("quick YAML read", () => {
  it("gives exactly what the full parser gives, or leaves the file to it", () => {
    let quick = 0;
    fc.assert(
      fc.property(fc.uniqueArray(fc.tuple(key, tree), { minLength: 1, maxLength: 5, selector: ([k]) => k }), fc.boolean(), (top, comment) => {
        const text = (comment ? "# generated\n" : "") + top.map(([k, v]) => `${k}:${render(v, "")}`).join("");
        const fast = readPlainYaml(text);
        if (fast === null) return;
        quick++;
        const full = parseFully("t.yaml", text);
        expect(full.errors, text).toEqual([]);
        // not toStrictEqual: it reads a key named "constructor" as the object's type
        expect(isDeepStrictEqual(fast, full.data), `${text}\nquick: ${inspect(fast, { depth: 9 })}\nfull: ${inspect(full.data, { depth: 9 })}`).toBe(true);
      }),
      { numRuns: 2000 },
    );
    // most generated files are plain: the comparison must actually run
    expect(quick).toBeGreaterThan(500);
  });

  it("leaves aliases, tags, directives, complex keys, tabs and duplicate keys to the full parser", () => {
    for (const text of [
      "a: &x 1\nb: *x\n",
      "a: !!str 1\n",
      "%YAML 1.1\n---\na: yes\n",
      "? [a]\n: 1\n",
      "[a]: 1\n",
      "a: {[b]: 1}\n",
      "a:\n\t- 1\n",
      "a: 1\na: 2\n",
      "- a\n",
      "",
    ]) {
      expect(readPlainYaml(text), JSON.stringify(text)).toBeNull();
    }
    expect(readPlainYaml("a: 0x1F\nb: 1_000\nc: ~\nd: yes\n")).toStrictEqual({ a: 31, b: "1_000", c: null, d: "yes" });
  });
});

/** Every path in a value, with one more that does not exist below each mapping and list. */
function paths(value: unknown, at: PropertyKey[] = []): PropertyKey[][] {
  const out: PropertyKey[][] = [at];
  if (Array.isArray(value)) {
    value.forEach((v, i) => out.push(...paths(v, [...at, i])));
    out.push([...at, value.length], [...at, "x"]);
  } else if (value !== null && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) out.push(...paths(v, [...at, k]));
    out.push([...at, "no-such-key"]);
  }
  return out;
}

describe("locating in a plain file without yaml's document", () => {
  it("names the same offset as yaml for every key and value of generated files", () => {
    let compared = 0;
    let unindexed = 0;
    fc.assert(
      fc.property(fc.uniqueArray(fc.tuple(key, tree), { minLength: 1, maxLength: 5, selector: ([k]) => k }), fc.boolean(), fc.boolean(), (top, comment, bom) => {
        const text = (bom ? "\ufeff" : "") + (comment ? "# generated\n\n" : "") + top.map(([k, v]) => `${k}:${render(v, "")}`).join("");
        const data = readPlainYaml(text);
        if (data === null) return;
        const index = indexPlainYaml(text);
        if (index === null) return void unindexed++; // lines the events cannot match (an empty list item): yaml locates those
        // the same index, taken while reading the data (as for files over 16 MB)
        const together = readPlainYamlIndexed(text);
        expect(together?.data).toEqual(data);
        const full = parseFully("t.yaml", text);
        for (const p of paths(data)) {
          for (const at of ["value", "key"] as const) {
            compared++;
            const expected = full.locate(p, at);
            expect(locatePlain(index, p, at), `${JSON.stringify(text)} ${JSON.stringify(p)} ${at}`).toBe(expected);
            expect(locatePlain(together!.index!, p, at)).toBe(expected);
          }
        }
      }),
      { numRuns: 2000 },
    );
    expect(compared).toBeGreaterThan(5000);
    expect(unindexed).toBe(0);
  });

  it("leaves to yaml what its events cannot line up, and the source still locates it", () => {
    const text = "a:\n  -\n  - x: 1\n";
    expect(readPlainYaml(text)).toEqual({ a: [null, { x: 1 }] });
    expect(indexPlainYaml(text)).toBeNull();
    const source = parseYaml("t.yaml", text);
    expect(source.position(source.locate(["a", 1, "x"], "key"))).toEqual({ line: 3, col: 5 });
  });

  it("is linear: a mapping of 200,000 keys is indexed once, not scanned per look-up", () => {
    const text = Array.from({ length: 200_000 }, (_, i) => `k${i}: ${i}\n`).join("");
    const index = indexPlainYaml(text)!;
    // each look-up after the first finds its key through the index built on the first one
    for (const i of [0, 199_999, 100_000]) expect(locatePlain(index, [`k${i}`], "key")).toBe(text.indexOf(`k${i}:`));
    const root = index.root as { byKey?: Map<string, number> };
    expect(root.byKey?.size).toBe(200_000);
  });
});
