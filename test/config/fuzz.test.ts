import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import path from "node:path";
import { stringify } from "yaml";
import { loadConfig, SHOWN_PROBLEMS } from "../../src/config/load.ts";
import { KerfError } from "../../src/errors.ts";
import { PIN_A, PIN_B, tempDir, type TempDir } from "./helpers.ts";

/**
 * Whatever the files hold, the loader either returns a config or throws a KerfError whose
 * every line is located; it never throws anything else, and it answers quickly.
 */

let t: TempDir;
beforeAll(async () => {
  t = await tempDir();
});
afterAll(async () => {
  await t.cleanup();
});

const CODES = new Set(["CONFIG_INVALID", "CONFIG_NOT_FOUND", "SECRET_MISSING", "MAPPING_INVALID"]);
const LOCATED = /^[^\n]+:\d+:\d+: [^\n]+$/;

async function check(config: string, mapping: string): Promise<void> {
  const file = await t.write("kerf.yaml", config);
  await t.write("mapping.yaml", mapping);
  try {
    await loadConfig(file);
  } catch (err) {
    if (!(err instanceof KerfError)) throw new Error(`loader threw ${String(err)} for:\n${config}\n---\n${mapping}`);
    expect(CODES.has(err.code)).toBe(true);
    expect(err.details.length).toBeGreaterThan(0);
    // past SHOWN_PROBLEMS lines, one more says how many were left out
    const shown = err.details.at(-1)?.startsWith("… and ") ? err.details.slice(0, -1) : err.details;
    expect(shown.length).toBeLessThanOrEqual(SHOWN_PROBLEMS);
    for (const line of shown) expect(line).toMatch(LOCATED);
  }
}

const base = {
  instance: "kerf-fuzz",
  mapping: "./mapping.yaml",
  machines: [{ id: "saw-1", endpoint: "opc.tcp://127.0.0.1:4840", user: { type: "username", username: "op", passwordEnv: "KERF_FUZZ_PW" } }],
  cloud: { url: "https://cloud.example.com/", pins: [PIN_A, PIN_B], batch: { maxBytes: "1MiB" } },
  buffer: { maxBytes: "1GiB" },
};
const baseMapping = { machines: { "saw-1": { groups: [{ name: "g", publishingInterval: 100, nodes: [{ key: "a", node: "ns=2;s=A", unit: "rpm" }] }] } } };

const tokens = fc.constantFrom(
  "instance: ", "mapping: ./mapping.yaml", "machines:", "cloud:", "pins:", "  - id: ", "endpoint: ", "user:", "type: ", "password: ",
  "__proto__: ", "constructor: ", "<<: ", "- ", "? ", ": ", "{", "}", "[", "]", ", ", "&a ", "*a", "*b", "!!str ", "!!binary ", "!foo ",
  "---\n", "...\n", "\n", "\n  ", "\n    ", "\t", "'", '"', "# c", "|\n  ", ">-\n  ", "~", "null", "1e400", "0x1F", ".inf", "-1", "2GiB", "\u0000", "\uFEFF", "é",
);
const yamlish = fc.array(fc.oneof({ weight: 4, arbitrary: tokens }, { weight: 1, arbitrary: fc.string({ maxLength: 12 }) }), { maxLength: 60 }).map((a) => a.join(""));

/** A value to put in place of a field: anything JSON-like, plus YAML-specific shapes. */
const anyValue = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.constantFrom(null, "", "opc.tcp://", "https://", "sha256/", "i=", "ns=1;", "1KiB", "-1", -1, 0, 1.5, 1e21, true, [], {}),
  fc.string({ maxLength: 30 }),
);

type Json = Record<string, unknown> | unknown[];

/** Sets one path of a deep copy: a random walk decides how deep the change goes. */
function mutate(root: Json, steps: number[], value: unknown, deleteIt: boolean): Json {
  const copy = structuredClone(root);
  let node: unknown = copy;
  for (let i = 0; i < steps.length; i++) {
    if (node === null || typeof node !== "object") break;
    const keys = Object.keys(node);
    if (keys.length === 0) break;
    const key = keys[steps[i]! % keys.length]!;
    const child = (node as Record<string, unknown>)[key];
    if (i === steps.length - 1 || child === null || typeof child !== "object") {
      if (deleteIt && !Array.isArray(node)) delete (node as Record<string, unknown>)[key];
      else (node as Record<string, unknown>)[key] = value;
      break;
    }
    node = child;
  }
  return copy;
}

const mutation = fc.record({ steps: fc.array(fc.nat(20), { minLength: 1, maxLength: 7 }), value: anyValue, deleteIt: fc.boolean() });

// CI runs a fixed seed so that a landing does not depend on luck; local runs explore new inputs.
const ciSeed = process.env.CI ? { seed: 20261123 } : {};

describe("the loader never crashes", () => {
  it("on random YAML-ish text (config and mapping)", async () => {
    await fc.assert(
      fc.asyncProperty(yamlish, yamlish, async (config, mapping) => check(config, mapping)),
      { numRuns: 200, ...ciSeed },
    );
  });

  it("on valid files with random parts replaced, added or removed", async () => {
    process.env.KERF_FUZZ_PW = "fuzz";
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(mutation, { maxLength: 3 }), fc.array(mutation, { maxLength: 3 }), fc.dictionary(fc.string({ maxLength: 8 }), anyValue, { maxKeys: 2 }), async (cm, mm, extra) => {
          let config: Json = base;
          for (const m of cm) config = mutate(config, m.steps, m.value, m.deleteIt);
          let mapping: Json = baseMapping;
          for (const m of mm) mapping = mutate(mapping, m.steps, m.value, m.deleteIt);
          if (!Array.isArray(config)) config = { ...config, ...extra };
          await check(stringify(config), stringify(mapping));
        }),
        { numRuns: 200, ...ciSeed },
      );
    } finally {
      delete process.env.KERF_FUZZ_PW;
    }
  });

  it("the unmutated base is valid, so the mutations test something", async () => {
    process.env.KERF_FUZZ_PW = "fuzz";
    try {
      await t.write("mapping.yaml", stringify(baseMapping));
      const loaded = await loadConfig(await t.write("kerf.yaml", stringify(base)));
      expect(loaded.config.machines[0]!.id).toBe("saw-1");
      expect(path.isAbsolute(loaded.mappingFile)).toBe(true);
    } finally {
      delete process.env.KERF_FUZZ_PW;
    }
  });
});
