import { afterEach, beforeEach, describe, expect, it } from "vitest";
import path from "node:path";
import { command, kerf as kerfCli } from "../cli/helpers.ts";
import { GOOD_CONFIG, GOOD_MAPPING, tempDir, type TempDir } from "./helpers.ts";

const kerf = (...args: string[]) => kerfCli(args);

let t: TempDir;
beforeEach(async () => {
  t = await tempDir();
});
afterEach(async () => {
  await t.cleanup();
});

describe("kerf validate", () => {
  it("prints 'FILE: ok (N machines, M data points)' and exits 0 for a valid config", async () => {
    const file = await t.write("kerf.yaml", GOOD_CONFIG);
    await t.write("mapping.yaml", GOOD_MAPPING);
    const r = await kerf("validate", "--config", file);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe(`${file}: ok (1 machine, 1 data point)\n`);
    expect(r.code).toBe(0);
  });

  it("validates the shipped example", async () => {
    const r = await kerf("validate", "--config", "config/kerf.example.yaml");
    expect(r.stdout).toBe("config/kerf.example.yaml: ok (2 machines, 7 data points)\n");
    expect(r.code).toBe(0);
  });

  it("through npx: a bad file exits 1 with every error at file:line and no stack trace", async () => {
    const file = await t.write("kerf.yaml", GOOD_CONFIG.replace("    endpoint: opc.tcp://127.0.0.1:4840\n", "    endpoint: opc.tcp://127.0.0.1:4840\n    colour: blue\n").replace("kerf-test", "Kerf Test"));
    await t.write("mapping.yaml", GOOD_MAPPING.replace('"ns=2;s=Spindle.Speed"', '"i=abc"'));
    const r = await command("npx", ["kerf", "validate", "--config", file]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain(`${file}:1:11: instance: not a valid instance id (found "Kerf Test"`);
    expect(r.stderr).toContain(`${file}:6:5: machines[0].colour: unknown field colour`);
    expect(r.stderr).toContain(`${path.join(t.dir, "mapping.yaml")}:7:19: machines.saw-1.groups[0].nodes[0].node: i= needs an integer 0..4294967295, found 'abc'`);
    expect(r.stderr).toContain("3 errors");
    expect(r.stderr).not.toContain("    at ");
  });

  it("a YAML syntax error, a missing file and a usage error: no stack traces", async () => {
    const broken = await t.write("broken.yaml", "instance: kerf-test\nmachines: [\n");
    const syntax = await kerf("validate", "--config", broken);
    expect(syntax.code).toBe(1);
    expect(syntax.stderr).toBe(`${broken}:2:11: YAML syntax error: this [ has no closing ] (expected ] before line 3)\nkerf: ${broken}: 1 error\n`);

    const missing = await kerf("validate", "--config", path.join(t.dir, "absent.yaml"));
    expect(missing.code).toBe(1);
    // a file-level error is said once
    expect(missing.stderr).toBe(`kerf: cannot read config file ${path.join(t.dir, "absent.yaml")}: no such file\n`);

    const usage = await kerf("validate");
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("--config FILE is required");

    const unknown = await kerf("validate", "--confg", "x");
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/^kerf: validate: unknown option '--confg'\n\nusage: kerf validate --config FILE\n/);

    for (const r of [syntax, missing, usage, unknown]) expect(r.stderr).not.toContain("    at ");
  });

  it("a syntax error is reported where it was made, not where the parser gave up", async () => {
    // An unclosed quote on line 14 of 16: yaml notices it at the end of the file (17:1).
    const lines = GOOD_CONFIG.split("\n");
    const text = [
      ...lines.slice(0, 5),
      "    security:",
      "      mode: SignAndEncrypt",
      "      policy: Basic256Sha256",
      "  - id: saw-2",
      "    endpoint: opc.tcp://127.0.0.1:4841",
      "    connectTimeoutMs: 5000",
      "    sessionTimeoutMs: 60000",
      "    user:",
      '      type: "anonymous',
      ...lines.slice(5),
    ].join("\n");
    expect(text.split("\n")[13]).toBe('      type: "anonymous');
    const file = await t.write("kerf.yaml", text);
    await t.write("mapping.yaml", GOOD_MAPPING);
    const quote = await kerf("validate", "--config", file);
    expect(quote.code).toBe(1);
    expect(quote.stderr).toBe(`${file}:14:13: YAML syntax error: this quoted string has no closing " (the rest of the file was read as part of it)\nkerf: ${file}: 1 error\n`);

    // A key indented one space too far: yaml blames the line before it, and twice.
    const indented = await t.write("kerf.yaml", GOOD_CONFIG.replace("    endpoint: opc.tcp://127.0.0.1:4840\n", "    endpoint: opc.tcp://127.0.0.1:4840\n     connectTimeoutMs: 5000\n"));
    const indent = await kerf("validate", "--config", indented);
    expect(indent.stderr).toBe(`${indented}:6:6: YAML syntax error: bad indentation: this key is read as part of the value on line 5 (indent it like the keys above it)\nkerf: ${indented}: 1 error\n`);
  });

  it("says so when the mapping file is given as the config, or the config as the mapping", async () => {
    const mapping = await t.write("mapping.yaml", GOOD_MAPPING);
    const swapped = await kerf("validate", "--config", mapping);
    expect(swapped.code).toBe(1);
    expect(swapped.stderr).toBe(
      `${mapping}:1:1: machines: this looks like a mapping file (machines: holds groups per machine id), not a connector config; give the connector config (kerf.yaml) to --config: its mapping: field names this file\nkerf: ${mapping}: 1 error\n`,
    );

    const config = await t.write("kerf.yaml", GOOD_CONFIG.replace("mapping: ./mapping.yaml", "mapping: ./kerf.yaml"));
    const self = await kerf("validate", "--config", config);
    expect(self.code).toBe(1);
    expect(self.stderr).toBe(
      `${config}:2:10: mapping: the mapping file looks like a connector config, not a mapping file (found "${path.join(t.dir, "kerf.yaml")}" with a list of machines; expected the node-id mapping file, see config/mapping.example.yaml)\nkerf: ${config}: 1 error\n`,
    );
  });

  it("prints at most 50 errors of a large file, then how many more there are, and locates each in one pass", async () => {
    // 200,000 unknown fields (4 MB): before, locating each one scanned the mapping anew (16 s for 1 MB).
    const extra = Array.from({ length: 200_000 }, (_, i) => `unknown${i}: ${i}\n`).join("");
    const file = await t.write("kerf.yaml", GOOD_CONFIG + extra);
    await t.write("mapping.yaml", GOOD_MAPPING);
    const r = await kerf("validate", "--config", file);
    expect(r.code).toBe(1);
    const out = r.stderr.trimEnd().split("\n");
    expect(out).toHaveLength(52);
    expect(out[0]).toBe(`${file}:9:1: unknown0: unknown field unknown0 (expected one of: instance, log, mapping, machines, cloud, buffer, update, commands, status)`);
    expect(out[49]).toBe(`${file}:58:1: unknown49: unknown field unknown49 (expected one of: instance, log, mapping, machines, cloud, buffer, update, commands, status)`);
    expect(out[50]).toBe("… and 199950 more errors");
    expect(out[51]).toBe(`kerf: ${file}: 200000 errors`);
  });
});
