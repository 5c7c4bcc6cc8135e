import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { loadConfig } from "../../src/config/load.ts";
import { generateSchemas, staleSchemas } from "../../src/config/write-schema.ts";
import { tempDir, type TempDir } from "./helpers.ts";

const CONFIG_DIR = fileURLToPath(new URL("../../config/", import.meta.url));
const EXAMPLE = path.join(CONFIG_DIR, "kerf.example.yaml");

let t: TempDir;
beforeEach(async () => {
  t = await tempDir();
});
afterEach(async () => {
  await t.cleanup();
});

describe("config/ examples", () => {
  it("kerf.example.yaml and mapping.example.yaml load without errors or warnings", async () => {
    const loaded = await loadConfig(EXAMPLE);
    expect(loaded.config.instance).toBe("kerf-line1-saw");
    expect(loaded.config.machines.map((m) => m.id)).toEqual(["saw-1", "edgebander-1"]);
    expect(loaded.mappingFile).toBe(path.join(CONFIG_DIR, "mapping.example.yaml"));
    expect(Object.keys(loaded.mapping.machines)).toEqual(["saw-1", "edgebander-1"]);
    expect(loaded.warnings).toEqual([]);
  });

  it("the commented-out alternatives are valid too once uncommented", async () => {
    const text = await readFile(EXAMPLE, "utf8");
    // Swap the anonymous user for the username variant, with its password in the environment.
    const username = text
      .replace("    user:\n      type: anonymous\n", "")
      .replace("    # user:\n    #   type: username", "    user:\n      type: username")
      .replace("    #   username: operator", "      username: operator")
      .replace("    #   passwordFile: /run/secrets/opcua-password", "    #   passwordFile: /run/secrets/opcua-password")
      .replace("    #   # passwordEnv: KERF_OPCUA_PASSWORD", "      passwordEnv: KERF_EXAMPLE_PASSWORD")
      .replace("mapping: ./mapping.example.yaml", `mapping: ${path.join(CONFIG_DIR, "mapping.example.yaml")}`)
      .replace("  # caFile: ./cloud-ca.pem", "  caFile: ./cloud-ca.pem")
      .replace("  # identity:\n  #   certificateFile: ./identity/cert.pem\n  #   privateKeyFile: ./identity/key.pem", "  identity:\n    certificateFile: ./identity/cert.pem\n    privateKeyFile: ./identity/key.pem");
    expect(username).toContain("passwordEnv: KERF_EXAMPLE_PASSWORD");
    expect(username).toContain("\n  caFile:");
    await t.write("cloud-ca.pem", "-----BEGIN CERTIFICATE-----\n");
    const file = await t.write("kerf.yaml", username);
    process.env.KERF_EXAMPLE_PASSWORD = "example-password";
    try {
      const loaded = await loadConfig(file);
      expect(loaded.config.machines[0]!.user).toEqual({ type: "username", username: "operator", passwordEnv: "KERF_EXAMPLE_PASSWORD" });
      expect(loaded.secrets.machines["saw-1"]!.password!.reveal()).toBe("example-password");
      expect(loaded.config.cloud.identity!.certificateFile).toBe(path.join(t.dir, "identity/cert.pem"));
    } finally {
      delete process.env.KERF_EXAMPLE_PASSWORD;
    }
  });
});

describe("config/*.schema.json", () => {
  it("are what `npm run schema` generates from the zod schema now", async () => {
    expect(await staleSchemas(CONFIG_DIR)).toEqual([]);
    const generated = generateSchemas();
    expect(Object.keys(generated).sort()).toEqual(["kerf.schema.json", "mapping.schema.json"]);
    for (const [name, text] of Object.entries(generated)) {
      expect(await readFile(path.join(CONFIG_DIR, name), "utf8")).toBe(text);
    }
  });

  it("describe the files as written: strict objects, required fields, defaults", () => {
    const kerf = JSON.parse(generateSchemas()["kerf.schema.json"]!);
    expect(kerf.additionalProperties).toBe(false);
    expect(kerf.required).toEqual(["instance", "mapping", "machines", "cloud"]);
    const machine = kerf.properties.machines.items;
    expect(machine.additionalProperties).toBe(false);
    expect(machine.properties.connectTimeoutMs.default).toBe(10000);
    expect(machine.properties.endpoint.pattern).toBeDefined();
    expect(kerf.properties.cloud.properties.pins.items.pattern).toBeDefined();
    expect(kerf.properties.buffer.properties.maxBytes.default).toBe("1GiB");
    const mapping = JSON.parse(generateSchemas()["mapping.schema.json"]!);
    expect(mapping.required).toEqual(["machines"]);
  });
});
