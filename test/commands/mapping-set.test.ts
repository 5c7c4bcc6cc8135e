import { readFileSync, readdirSync, statSync } from "node:fs";
import { afterEach, beforeEach, expect, it } from "vitest";
import { setMapping } from "../../src/commands/mapping-set.ts";
import { GOOD_CONFIG, GOOD_MAPPING, load, mappingWith, tempDir, type TempDir } from "../config/helpers.ts";

let t: TempDir;
beforeEach(async () => {
  t = await tempDir();
});
afterEach(() => t.cleanup());

const NEW_MAPPING = mappingWith(`      - name: slow
        publishingInterval: 5000
        nodes:
          - key: spindle.temperature
            node: "ns=2;s=Spindle.Temperature"
`);

it("a mapping that passes the loader replaces the file (mode kept) and comes back loaded", async () => {
  const loaded = await load(t, GOOD_CONFIG, GOOD_MAPPING);
  const mode = statSync(loaded.mappingFile).mode & 0o777;
  const result = await setMapping(loaded, NEW_MAPPING, "mapping from command c-1");
  expect(result.ok).toBe(true);
  if (!result.ok) return;
  expect(result.loaded.mappingFile).toBe(loaded.mappingFile);
  expect(result.loaded.mapping.machines["saw-1"]!.groups.map((g) => g.name)).toEqual(["slow"]);
  expect(readFileSync(loaded.mappingFile, "utf8")).toBe(NEW_MAPPING);
  expect(statSync(loaded.mappingFile).mode & 0o777).toBe(mode);
  expect(readdirSync(t.dir).sort()).toEqual(["kerf.yaml", "mapping.yaml"]);
});

it("a bad mapping is refused with its lines, and the file stays as it was", async () => {
  const loaded = await load(t, GOOD_CONFIG, GOOD_MAPPING);
  const bad = `${NEW_MAPPING}  saw-9:\n    groups: []\n`;
  const result = await setMapping(loaded, bad, "mapping from command c-2");
  expect(result.ok).toBe(false);
  if (result.ok) return;
  expect(result.errors).toEqual([
    expect.stringMatching(/^mapping from command c-2:9:3: machines\.saw-9: not a machine of the config/),
    expect.stringMatching(/^mapping from command c-2:10:13: machines\.saw-9\.groups: too few items/),
  ]);
  expect(readFileSync(loaded.mappingFile, "utf8")).toBe(GOOD_MAPPING);
  expect(readdirSync(t.dir).sort()).toEqual(["kerf.yaml", "mapping.yaml"]);
  // Not YAML at all: refused too.
  const junk = await setMapping(loaded, "machines: [\n", "mapping from command c-3");
  expect(junk.ok).toBe(false);
  expect(readFileSync(loaded.mappingFile, "utf8")).toBe(GOOD_MAPPING);
});
