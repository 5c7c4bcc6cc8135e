import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";
import { loadConfig } from "../../src/config/load.ts";
import { DATA_CHANGE_TRIGGERS, DEADBAND_TYPES, DEPRECATED_POLICIES, LOG_LEVELS, SECURITY_MODE_CHOICES, SECURITY_POLICIES, WHEN_FULL } from "../../src/config/schema.ts";
import { generateSchemas, staleSchemas } from "../../src/config/write-schema.ts";
import type { KerfError } from "../../src/errors.ts";
import { PIN_A, PIN_B, tempDir, type TempDir } from "./helpers.ts";

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
      .replace("keys: ./command-keys.example.json", `keys: ${path.join(CONFIG_DIR, "command-keys.example.json")}`)
      .replace("  # caFile: ./cloud-ca.pem", "  caFile: ./cloud-ca.pem")
      // Identity files provisioned by hand instead of enrolment: the two exclude each other.
      .replace(/ {2}enrolment:\n(?: {4}.*\n)+/, "")
      .replace("  # identity:\n  #   certificateFile: ./identity/cert.pem\n  #   privateKeyFile: ./identity/key.pem", "  identity:\n    certificateFile: ./identity/cert.pem\n    privateKeyFile: ./identity/key.pem")
      .replace("  # proxy:\n  #   url: http://proxy.example.com:3128\n  #   usernameFile: /run/secrets/proxy-user\n  #   passwordFile: /run/secrets/proxy-password", "  proxy:\n    url: http://proxy.example.com:3128\n    usernameFile: ./proxy-user\n    passwordFile: ./proxy-password")
      .replace("  # encryption:\n  #   keyFile: /run/secrets/kerf-buffer-key", "  encryption:\n    keyFile: ./buffer.key");
    expect(username).toContain("passwordEnv: KERF_EXAMPLE_PASSWORD");
    expect(username).toContain("\n  caFile:");
    await t.write("cloud-ca.pem", "-----BEGIN CERTIFICATE-----\n");
    await t.write("proxy-user", "line-1\n", 0o600);
    await t.write("proxy-password", "proxy-password\n", 0o600);
    await t.write("buffer.key", `${"ab".repeat(32)}\n`, 0o600);
    const file = await t.write("kerf.yaml", username);
    process.env.KERF_EXAMPLE_PASSWORD = "example-password";
    try {
      const loaded = await loadConfig(file);
      expect(loaded.config.machines[0]!.user).toEqual({ type: "username", username: "operator", passwordEnv: "KERF_EXAMPLE_PASSWORD" });
      expect(loaded.secrets.machines["saw-1"]!.password!.reveal()).toBe("example-password");
      expect(loaded.config.cloud.identity!.certificateFile).toBe(path.join(t.dir, "identity/cert.pem"));
      expect(loaded.config.cloud.proxy!.url).toBe("http://proxy.example.com:3128");
      expect(loaded.secrets.proxy!.password.reveal()).toBe("proxy-password");
      expect(loaded.config.buffer.encryption).toEqual({ keyFile: path.join(t.dir, "buffer.key") });
      expect(loaded.secrets.bufferKey!.reveal().symmetricKeySize).toBe(32);
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

// ---------------------------------------------------------------------------------------------
// Every option with a fixed set of values: the schema's set, the example's comment and a file
// that uses each value agree.

interface EnumField {
  name: string;
  /** The property that holds it: "security" for security.mode. */
  parent: string;
  values: string[];
}

/** Every enum (and discriminated union's type) in a JSON Schema, with the names around it. */
function enumFields(schema: unknown): { enums: EnumField[]; booleans: Set<string> } {
  const enums: EnumField[] = [];
  const booleans = new Set<string>();
  const visit = (node: unknown, name: string, parent: string): void => {
    if (node === null || typeof node !== "object") return;
    const n = node as Record<string, unknown>;
    if (Array.isArray(n.enum)) enums.push({ name, parent, values: n.enum.map(String) });
    if (n.type === "boolean") booleans.add(name);
    const branches = [...((n.oneOf as unknown[]) ?? []), ...((n.anyOf as unknown[]) ?? [])] as { properties?: Record<string, { const?: unknown }> }[];
    const consts = branches.map((b) => b.properties?.type?.const).filter((c) => c !== undefined);
    if (consts.length > 1 && consts.length === branches.length) enums.push({ name: "type", parent: name, values: consts.map(String) });
    for (const [key, sub] of Object.entries((n.properties as Record<string, unknown>) ?? {})) visit(sub, key, name);
    for (const sub of branches) visit(sub, name, parent);
    if (n.items) visit(n.items, name, parent);
    if (n.additionalProperties) visit(n.additionalProperties, name, parent);
  };
  visit(schema, "", "");
  return { enums, booleans };
}

interface DocumentedList {
  line: number;
  /** "type" in "# type: absolute | percent"; otherwise the key documented is the block's. */
  prefix: string | undefined;
  /** The key of the line below the comment block. */
  key: string;
  values: string[];
}

/** Comment lines that start with "a | b | c" (or "key: a | b"), each with the key its block documents. */
function documentedLists(text: string): { lists: DocumentedList[]; blocks: { key: string; comments: string[] }[] } {
  const lines = text.split("\n");
  const lists: DocumentedList[] = [];
  const blocks: { key: string; comments: string[] }[] = [];
  let comments: { line: number; text: string }[] = [];
  lines.forEach((raw, i) => {
    const comment = /^\s*#\s?(.*)$/.exec(raw);
    if (comment) {
      comments.push({ line: i + 1, text: comment[1]! });
      return;
    }
    const key = /^\s*(?:-\s+)?([A-Za-z]\w*):/.exec(raw)?.[1];
    if (key) {
      blocks.push({ key, comments: comments.map((c) => c.text) });
      for (const c of comments) {
        const list = /^(?:([A-Za-z]\w*): )?(\w+(?:\.\w+)*(?: \| \w+(?:\.\w+)*)+)(?![\w|])/.exec(c.text);
        if (list) lists.push({ line: c.line, prefix: list[1], key, values: list[2]!.split(" | ") });
      }
    }
    comments = [];
  });
  return { lists, blocks };
}

const sameSet = (a: readonly string[], b: readonly string[]) => a.length === b.length && new Set(a).size === a.length && a.every((x) => b.includes(x));
const documents = (l: { prefix: string | undefined; key: string }, f: EnumField) => (l.prefix === undefined ? f.name === l.key : f.name === l.prefix && f.parent === l.key);

describe("options with a fixed set of values", () => {
  for (const [example, schemaFile] of [
    ["kerf.example.yaml", "kerf.schema.json"],
    ["mapping.example.yaml", "mapping.schema.json"],
  ] as const) {
    it(`${example} lists exactly the values the schema takes, for every such option`, async () => {
      const { enums, booleans } = enumFields(JSON.parse(generateSchemas()[schemaFile]!));
      expect(enums.length).toBeGreaterThan(1);
      const { lists, blocks } = documentedLists(await readFile(path.join(CONFIG_DIR, example), "utf8"));
      // Each list in a comment is an option's whole set of values: documented means accepted.
      for (const list of lists) {
        const where = `${example}:${list.line}: ${list.prefix ? `${list.prefix} of ` : ""}${list.key}: ${list.values.join(" | ")}`;
        if (sameSet(list.values, ["true", "false"])) expect(booleans.has(list.key), `${where} documents no boolean field`).toBe(true);
        else expect(enums.some((f) => documents(list, f) && sameSet(f.values, list.values)), `${where} is not what the schema takes (${JSON.stringify(enums.filter((f) => documents(list, f)))})`).toBe(true);
      }
      // And every option with a set of values has such a list (an option of one value: that value opens a comment line).
      for (const field of enums) {
        const listed = lists.some((l) => documents(l, field) && sameSet(field.values, l.values));
        const single = field.values.length === 1 && blocks.some((b) => b.key === field.name && b.comments.some((c) => c.startsWith(`${field.values[0]} `) || c === field.values[0]));
        expect(listed || single, `${example} does not list the values of ${field.parent}.${field.name}: ${field.values.join(" | ")}`).toBe(true);
      }
    });
  }

  it("a config and a mapping that use every one of those values load", async () => {
    await t.write("cert.pem", "-----BEGIN CERTIFICATE-----\n");
    await t.write("key.pem", "-----BEGIN PRIVATE KEY-----\n", 0o600);
    process.env.KERF_EXAMPLE_PASSWORD = "example-password";
    const securities = [
      ...SECURITY_MODE_CHOICES.map((mode) => ({ mode })),
      ...SECURITY_POLICIES.map((policy) => ({ mode: policy === "None" ? "None" : "SignAndEncrypt", policy, ...(DEPRECATED_POLICIES.has(policy) ? { allowDeprecated: true } : {}) })),
    ];
    const users = [
      { type: "anonymous" },
      { type: "username", username: "op", passwordEnv: "KERF_EXAMPLE_PASSWORD" },
      { type: "certificate", certificateFile: "cert.pem", privateKeyFile: "key.pem" },
    ];
    const machines = securities.map((security, i) => ({ id: `m${i}`, endpoint: `opc.tcp://127.0.0.1:${4840 + i}`, security, user: users[i % users.length] }));
    const node = (i: number, extra: object) => ({ key: `k${i}`, node: `ns=2;i=${i}`, ...extra });
    const nodes = [...DEADBAND_TYPES.map((type) => ({ deadband: { type, value: 1 } })), ...DATA_CHANGE_TRIGGERS.map((dataChangeTrigger) => ({ dataChangeTrigger }))].map((extra, i) => node(i, extra));
    try {
      for (const level of LOG_LEVELS) {
        for (const whenFull of WHEN_FULL) {
          await t.write("mapping.yaml", stringify({ machines: Object.fromEntries(machines.map((m) => [m.id, { groups: [{ name: "g", nodes }] }])) }));
          const file = await t.write("kerf.yaml", stringify({ instance: "kerf-test", log: { level }, mapping: "./mapping.yaml", machines, cloud: { url: "https://cloud.example.com/", pins: [PIN_A, PIN_B] }, buffer: { maxBytes: "1GiB", whenFull } }));
          const loaded = await loadConfig(file);
          expect(loaded.config.log.level).toBe(level);
          expect(loaded.config.machines.map((m) => m.security.mode)).toEqual(securities.map((s) => s.mode));
          expect(loaded.config.machines.map((m) => m.user.type)).toEqual(machines.map((m) => m.user!.type));
        }
      }
    } finally {
      delete process.env.KERF_EXAMPLE_PASSWORD;
    }
  });

  it("mode best takes no policy, and says why a policy would not do", async () => {
    const text = (await readFile(EXAMPLE, "utf8"))
      .replace("mapping: ./mapping.example.yaml", `mapping: ${path.join(CONFIG_DIR, "mapping.example.yaml")}`)
      .replace("keys: ./command-keys.example.json", `keys: ${path.join(CONFIG_DIR, "command-keys.example.json")}`);
    const best = await t.write("kerf.yaml", text.replace("      mode: SignAndEncrypt\n", "      mode: best\n").replace("      policy: Basic256Sha256\n", ""));
    expect((await loadConfig(best)).config.machines[0]!.security.mode).toBe("best");
    const withPolicy = await t.write("kerf.yaml", text.replace("      mode: SignAndEncrypt\n", "      mode: best\n"));
    const err = await loadConfig(withPolicy).then(
      () => undefined,
      (e: unknown) => e as KerfError,
    );
    expect(err?.details.map((d) => d.split(t.dir + path.sep).join(""))).toEqual([
      "kerf.yaml:35:15: machines[0].security.policy: mode best picks the policy itself, the strongest the server offers, so a policy here would be ignored (found policy Basic256Sha256; expected no policy with mode best, or mode SignAndEncrypt or Sign to require Basic256Sha256)",
    ]);
  });
});
