import { afterEach, beforeEach, describe, expect, it } from "vitest";
import path from "node:path";
import { formatConfigErrors, loadConfig } from "../../src/config/load.ts";
import { isKerfError } from "../../src/errors.ts";
import { CLOUD, GOOD_CONFIG, GOOD_MAPPING, PIN_A, configWith, lines, load, loadError, mappingWith, tempDir, type TempDir } from "./helpers.ts";

let t: TempDir;
beforeEach(async () => {
  t = await tempDir();
});
afterEach(async () => {
  await t.cleanup();
});

describe("each error names file, line, column, field and what was expected", () => {
  it("unknown field: names the field and lists the allowed ones", async () => {
    const err = await loadError(
      t,
      configWith("    endpont: opc.tcp://typo:4840\n"),
    );
    expect(err.code).toBe("CONFIG_INVALID");
    expect(lines(err, t.dir)).toEqual([
      "kerf.yaml:6:5: machines[0].endpont: unknown field endpont (expected one of: id, endpoint, security, user, connectTimeoutMs, sessionTimeoutMs, trustOnFirstUse, allowHostnameMismatch)",
    ]);
  });

  it("unknown fields named like secrets or like Object's own members are reported too (found by the fuzz test)", async () => {
    const err = await loadError(
      t,
      configWith("    toString: x\n"),
      `${GOOD_MAPPING}            password: x\n`,
    );
    expect(lines(err, t.dir)).toEqual([
      expect.stringMatching(/^kerf\.yaml:6:5: machines\[0\]\.toString: unknown field toString /),
      expect.stringMatching(/^mapping\.yaml:8:13: machines\.saw-1\.groups\[0\]\.nodes\[0\]\.password: unknown field password /),
    ]);
  });

  it("wrong type: the expected type and the value found, truncated", async () => {
    const long = "x".repeat(500);
    const err = await loadError(
      t,
      configWith(`    connectTimeoutMs: "${long}"
    sessionTimeoutMs: [1, 2]
`),
    );
    const got = lines(err, t.dir);
    expect(got).toHaveLength(2);
    expect(got[0]).toBe(`kerf.yaml:6:23: machines[0].connectTimeoutMs: wrong type (found "${"x".repeat(59)}…"; expected a number)`);
    expect(got[1]).toBe("kerf.yaml:7:23: machines[0].sessionTimeoutMs: wrong type (found a list of 2 items; expected a number)");
  });

  it("missing required field: points at the mapping that lacks it", async () => {
    const err = await loadError(t, `instance: kerf-test\nmapping: ./mapping.yaml\nmachines:\n  - id: saw-1\n${CLOUD}`);
    expect(lines(err, t.dir)).toEqual(["kerf.yaml:4:5: machines[0].endpoint: missing required field (expected a string)"]);
  });

  it("inline password: a specific message, and the password itself is never echoed", async () => {
    const err = await loadError(
      t,
      configWith(`    user:
      type: username
      username: operator
      password: hunter2-secret
`),
    );
    expect(lines(err, t.dir)).toEqual([
      "kerf.yaml:7:7: machines[0].user: a username needs a password source (found neither passwordFile nor passwordEnv; expected exactly one of them)",
      "kerf.yaml:9:7: machines[0].user.password: passwords are not allowed in the config file; use passwordFile or passwordEnv",
    ]);
    expect(formatConfigErrors(err)).not.toContain("hunter2");
  });

  it("inline private key, anywhere in the file", async () => {
    const err = await loadError(
      t,
      configWith("", `${CLOUD}  identity:
    certificateFile: ./cert.pem
    privateKey: "-----BEGIN PRIVATE KEY-----"
`),
    );
    expect(lines(err, t.dir)).toEqual([
      "kerf.yaml:10:5: cloud.identity.privateKeyFile: missing required field (expected a string)",
      "kerf.yaml:11:5: cloud.identity.privateKey: private keys are not allowed in the config file; use privateKeyFile",
    ]);
    expect(formatConfigErrors(err)).not.toContain("BEGIN PRIVATE");
  });

  it("a password pasted into passwordEnv is not echoed", async () => {
    const err = await loadError(
      t,
      configWith(`    user: { type: username, username: op, passwordEnv: "s3cr3t!pw" }\n`),
    );
    expect(lines(err, t.dir)).toEqual([
      "kerf.yaml:6:56: machines[0].user.passwordEnv: not an environment variable name (expected letters, digits and '_', not starting with a digit)",
    ]);
    expect(formatConfigErrors(err)).not.toContain("s3cr3t");
  });

  it("deprecated policy without allowDeprecated, and accepted with it", async () => {
    const config = (extra: string) => configWith(`    security:
      mode: Sign
      policy: Basic128Rsa15${extra}
`);
    const err = await loadError(t, config(""));
    expect(lines(err, t.dir)).toEqual([
      "kerf.yaml:8:15: machines[0].security.policy: policy Basic128Rsa15 is deprecated and needs allowDeprecated: true (found Basic128Rsa15; expected Basic256Sha256, Aes128_Sha256_RsaOaep or Aes256_Sha256_RsaPss)",
    ]);
    await t.write("kerf.yaml", config("\n      allowDeprecated: true"));
    const loaded = await loadConfig(path.join(t.dir, "kerf.yaml"));
    expect(loaded.config.machines[0]!.security).toEqual({ mode: "Sign", policy: "Basic128Rsa15", allowDeprecated: true });
  });

  it("mode and policy must agree: None goes with None only", async () => {
    const err = await loadError(
      t,
      configWith(`    security: { mode: None, policy: Basic256Sha256 }
  - id: saw-2
    endpoint: opc.tcp://127.0.0.1:4841
    security: { mode: SignAndEncrypt, policy: None }
  - id: saw-3
    endpoint: opc.tcp://127.0.0.1:4842
    security: { mode: None }
`),
    );
    expect(lines(err, t.dir)).toEqual([
      "kerf.yaml:6:37: machines[0].security.policy: mode None sends everything in clear, so it cannot use a security policy (found policy Basic256Sha256; expected policy None, or mode Sign or SignAndEncrypt)",
      "kerf.yaml:9:47: machines[1].security.policy: mode SignAndEncrypt needs a security policy (found policy None; expected Basic256Sha256, Aes128_Sha256_RsaOaep or Aes256_Sha256_RsaPss, or mode None)",
      // saw-3: an omitted policy follows the mode, so mode None alone is fine.
    ]);
  });

  it("a username with security mode None loads: whether the password is protected is the server's token policy, checked at connect", async () => {
    process.env.KERF_TEST_PW_NONE = "pw";
    try {
      const loaded = await load(
        t,
        configWith(`    security: { mode: None, policy: None }
    user: { type: username, username: op, passwordEnv: KERF_TEST_PW_NONE }
`),
      );
      expect(loaded.config.machines[0]!.security.mode).toBe("None");
      expect(loaded.secrets.machines["saw-1"]!.password!.reveal()).toBe("pw");
    } finally {
      delete process.env.KERF_TEST_PW_NONE;
    }
  });

  it("missing password file and unset password variable: SECRET_MISSING at their lines", async () => {
    delete process.env.KERF_TEST_UNSET_PW;
    const err = await loadError(
      t,
      configWith(`    user:
      type: username
      username: operator
      passwordFile: ./secrets/missing-password
  - id: saw-2
    endpoint: opc.tcp://127.0.0.1:4841
    user:
      type: username
      username: operator
      passwordEnv: KERF_TEST_UNSET_PW
`),
      `machines:
  saw-1:
    groups: [{ name: g, nodes: [{ key: a, node: "i=1" }] }]
  saw-2:
    groups: [{ name: g, nodes: [{ key: a, node: "i=1" }] }]
`,
    );
    expect(err.code).toBe("SECRET_MISSING");
    expect(lines(err, t.dir)).toEqual([
      `kerf.yaml:9:21: machines[0].user.passwordFile: cannot read the password file (found "./secrets/missing-password": no such file; expected a readable file)`,
      "kerf.yaml:15:20: machines[1].user.passwordEnv: environment variable KERF_TEST_UNSET_PW is not set (expected it to hold the password)",
    ]);
  });

  it("an empty password file is an error too", async () => {
    await t.write("pw", "\n", 0o600);
    const err = await loadError(
      t,
      configWith("    user: { type: username, username: op, passwordFile: pw }\n"),
    );
    expect(lines(err, t.dir)).toEqual([`kerf.yaml:6:57: machines[0].user.passwordFile: the password file is empty (found "pw"; expected the password)`]);
  });

  it("YAML syntax errors give file:line:col: an unclosed bracket where it opens", async () => {
    const err = await loadError(t, `instance: kerf-test\nmapping: ./mapping.yaml\nmachines:\n  - id: saw-1\n    endpoint: [opc.tcp://x:1\ncloud: {}\n`);
    expect(err.code).toBe("CONFIG_INVALID");
    const got = lines(err, t.dir);
    expect(got.length).toBeGreaterThan(0);
    for (const l of got) expect(l).toMatch(/^kerf\.yaml:\d+:\d+: YAML syntax error: /);
    expect(got[0]).toBe("kerf.yaml:5:15: YAML syntax error: this [ has no closing ] (expected ] before line 6)");
  });

  it("a config with a syntax error still gets its mapping checked", async () => {
    const err = await loadError(t, `instance: kerf-test\nmapping: ./mapping.yaml\nmachines: [\n`, GOOD_MAPPING.replace("ns=2;s=Spindle.Speed", "ns=2;q=1"));
    const got = lines(err, t.dir);
    expect(got[0]).toMatch(/^kerf\.yaml:3:11: YAML syntax error: this \[ has no closing \]/);
    expect(got.at(-1)).toMatch(/^mapping\.yaml:7:19: machines\.saw-1\.groups\[0\]\.nodes\[0\]\.node: not a node id: /);
  });

  it("tabs used for indentation are reported at their line", async () => {
    const err = await loadError(t, `instance: kerf-test\nmapping: ./mapping.yaml\nmachines:\n\t- id: saw-1\n`);
    expect(lines(err, t.dir)[0]).toMatch(/^kerf\.yaml:4:1: YAML syntax error: Tabs are not allowed as indentation/);
  });

  it("duplicate YAML keys, duplicate machine ids, group names and data point keys", async () => {
    const err = await loadError(
      t,
      configWith(`  - id: saw-1
    endpoint: opc.tcp://127.0.0.1:4841
`),
      mappingWith(`      - name: fast
        nodes:
          - key: spindle.speed
            node: "i=1"
          - key: spindle.speed
            node: "i=2"
      - name: fast
        nodes:
          - key: feed
            node: "i=3"
            node: "i=4"
`),
    );
    expect(lines(err, t.dir)).toEqual([
      `kerf.yaml:6:9: machines[1].id: duplicate machine id (found "saw-1", already used by machines[0]; expected each id once)`,
      `mapping.yaml:14:13: machines.saw-1.groups[1].nodes[0].node: duplicate key "node" (expected each key once in a mapping)`,
    ]);
    // Without the YAML duplicate, the schema-level duplicates show.
    const err2 = await loadError(t, GOOD_CONFIG, (await import("node:fs")).readFileSync(path.join(t.dir, "mapping.yaml"), "utf8").replace(`            node: "i=4"\n`, ""));
    expect(lines(err2, t.dir)).toEqual([
      `mapping.yaml:8:18: machines.saw-1.groups[0].nodes[1].key: duplicate data point key (found "spindle.speed", already used by groups[0].nodes[0]; expected each key once per machine)`,
      `mapping.yaml:10:15: machines.saw-1.groups[1].name: duplicate group name (found "fast", already used by groups[0]; expected each name once per machine)`,
    ]);
  });

  it("bad node ids: the parser's precise message at the node's line", async () => {
    const err = await loadError(
      t,
      GOOD_CONFIG,
      mappingWith(`      - name: g
        nodes:
          - { key: a, node: "i=abc" }
          - { key: b, node: "ns=70000;i=1" }
          - { key: c, node: "x=1" }
          - { key: d, node: "g=not-a-guid" }
`),
    );
    expect(err.code).toBe("MAPPING_INVALID");
    expect(lines(err, t.dir)).toEqual([
      "mapping.yaml:6:29: machines.saw-1.groups[0].nodes[0].node: i= needs an integer 0..4294967295, found 'abc'",
      "mapping.yaml:7:29: machines.saw-1.groups[0].nodes[1].node: ns= needs a namespace index 0..65535, found '70000'",
      "mapping.yaml:8:29: machines.saw-1.groups[0].nodes[2].node: not a node id: expected i=<integer>, s=<string>, g=<GUID> or b=<base64>, optionally after ns=<index>; or nsu=<uri>; found 'x=1'",
      "mapping.yaml:9:29: machines.saw-1.groups[0].nodes[3].node: g= needs a GUID like 72962b91-fa75-4ae6-8d28-b404dc7daf63, found 'not-a-guid'",
    ]);
  });

  it("a mapping machine that is not in the config: error at the mapping's line", async () => {
    const err = await loadError(
      t,
      GOOD_CONFIG,
      `${GOOD_MAPPING}  lathe-9:
    groups: [{ name: g, nodes: [{ key: a, node: "i=1" }] }]
`,
    );
    expect(err.code).toBe("MAPPING_INVALID");
    expect(lines(err, t.dir)).toEqual([`mapping.yaml:8:3: machines.lathe-9: not a machine of the config (found "lathe-9"; expected one of the config's machine ids: "saw-1")`]);
  });

  it("sampling interval -1 is refused with a hint; 0 is allowed", async () => {
    const mapping = (v: number) => mappingWith(`      - name: g
        samplingInterval: ${v}
        nodes: [{ key: a, node: "i=1" }]
`);
    const err = await loadError(t, GOOD_CONFIG, mapping(-1));
    expect(lines(err, t.dir)).toEqual([
      "mapping.yaml:5:27: machines.saw-1.groups[0].samplingInterval: a sampling interval cannot be negative (found -1; expected 0 (as fast as the server can) or a number of milliseconds; leave it out to use the group's value)",
    ]);
    await t.write("mapping.yaml", mapping(0));
    const loaded = await loadConfig(path.join(t.dir, "kerf.yaml"));
    expect(loaded.mapping.machines["saw-1"]!.groups[0]!.nodes[0]!.samplingInterval).toBe(0);
  });

  it("bad sizes, ranges, enums, pins and URLs", async () => {
    const err = await loadError(
      t,
      `instance: Kerf_Line1
log: { level: verbose }
mapping: ./mapping.yaml
machines:
  - id: saw-1
    endpoint: http://127.0.0.1:4840
cloud:
  url: http://cloud.example.com/
  pins: ["sha256/not-base64", "${PIN_A}", "${PIN_A}"]
  concurrency: 0
  retry: { initialDelayMs: 5000, maxDelayMs: 1000 }
  batch: { maxBytes: 3 parsecs }
buffer:
  maxBytes: 512KiB
  whenFull: block
`,
    );
    expect(lines(err, t.dir)).toEqual([
      `kerf.yaml:1:11: instance: not a valid instance id (found "Kerf_Line1"; expected 1-63 lower-case letters, digits or '-', starting with a letter or digit)`,
      `kerf.yaml:2:15: log.level: not an allowed value (found "verbose"; expected one of fatal, error, warn, info, debug, trace)`,
      `kerf.yaml:6:15: machines[0].endpoint: not an OPC UA endpoint (found "http://127.0.0.1:4840"; expected opc.tcp://host:port[/path])`,
      `kerf.yaml:8:8: cloud.url: not an https URL (found "http://cloud.example.com/"; expected https://host[:port][/path], without user or password)`,
      `kerf.yaml:9:10: cloud.pins[0]: not an SPKI pin (found "sha256/not-base64"; expected "sha256/" followed by the base64 SHA-256 of the key's SubjectPublicKeyInfo (44 characters))`,
      `kerf.yaml:9:86: cloud.pins[2]: duplicate pin (found the pin of pins[1] again; expected each pin once)`,
      "kerf.yaml:10:16: cloud.concurrency: too small (found 0; expected ≥ 1)",
      "kerf.yaml:11:46: cloud.retry.maxDelayMs: maxDelayMs is below initialDelayMs (found 1000; expected at least 5000)",
      `kerf.yaml:12:22: cloud.batch.maxBytes: not a size (found "3 parsecs"; expected a number of bytes, or a string like 512MiB (units B, KiB, MiB, GiB, or KB, MB, GB = powers of 1000))`,
      "kerf.yaml:14:13: buffer.maxBytes: size too small (found 524288; expected at least 1 MiB)",
      `kerf.yaml:15:13: buffer.whenFull: not an allowed value (found "block"; expected dropOldest)`,
    ]);
  });

  it("credentials inside the cloud URL are refused, and the message does not repeat them", async () => {
    const err = await loadError(t, GOOD_CONFIG.replace("https://cloud.example.com/", "https://user:s3cret@cloud.example.com/"));
    expect(lines(err, t.dir)).toEqual([
      `kerf.yaml:7:8: cloud.url: not an https URL (found "https://***@cloud.example.com/"; expected https://host[:port][/path], without user or password)`,
    ]);
    expect([err.message, ...err.details].join("\n")).not.toContain("s3cret");
  });

  it("enrolment: a bad keyType, renewAt out of range, and identity files beside it", async () => {
    const enrol = `  enrolment:\n    url: https://cloud.example.com/.well-known/est\n    keyType: dsa\n    renewAt: 1.5\n  identity:\n    certificateFile: ./c.pem\n    privateKeyFile: ./k.pem\n`;
    const err = await loadError(t, GOOD_CONFIG + enrol);
    const got = lines(err, t.dir);
    expect(got).toHaveLength(3);
    expect(got[0]).toMatch(/^kerf\.yaml:10:5: cloud\.enrolment: enrolment and identity exclude each other \(found both; expected identity files provisioned by hand, or enrolment over EST\)$/);
    expect(got[1]).toMatch(/^kerf\.yaml:11:14: cloud\.enrolment\.keyType: .*"dsa".*ec.*rsa/);
    expect(got[2]).toMatch(/^kerf\.yaml:12:14: cloud\.enrolment\.renewAt: .*0\.95/);
  });

  it("reports ALL errors of both files at once: 3 errors give 3 lines, config first", async () => {
    const err = await loadError(
      t,
      configWith("    connectTimeoutMs: soon\n", `${CLOUD}  colour: blue\n`),
      mappingWith(`      - name: g
        nodes: [{ key: a, node: "s=" }]
`),
    );
    expect(err.code).toBe("CONFIG_INVALID");
    expect(err.message).toMatch(/kerf\.yaml and .*mapping\.yaml: 3 errors$/);
    expect(lines(err, t.dir)).toEqual([
      `kerf.yaml:6:23: machines[0].connectTimeoutMs: wrong type (found "soon"; expected a number)`,
      "kerf.yaml:10:3: cloud.colour: unknown field colour (expected one of: url, pins, caFile, identity, auth, enrolment, concurrency, requestTimeoutMs, retry, batch, proxy)",
      "mapping.yaml:5:33: machines.saw-1.groups[0].nodes[0].node: s= needs a non-empty string, found nothing after 's=' in 's='",
    ]);
  });

  it("a missing mapping file is an error at the config's mapping line (shown relative to the config as given)", async () => {
    await t.write("kerf.yaml", GOOD_CONFIG.replace("./mapping.yaml", "./nowhere.yaml"));
    const err = await loadConfig(path.join(t.dir, "kerf.yaml")).catch((e: unknown) => e);
    expect(isKerfError(err, "MAPPING_INVALID")).toBe(true);
    expect(lines(err as never, t.dir)).toEqual([
      `kerf.yaml:2:10: mapping: cannot read the mapping file (found "nowhere.yaml": no such file; expected a readable YAML file)`,
    ]);
  });

  it("a missing config file is CONFIG_NOT_FOUND; a directory or an empty file is CONFIG_INVALID", async () => {
    const missing = await loadConfig(path.join(t.dir, "absent.yaml")).catch((e: unknown) => e);
    expect(isKerfError(missing, "CONFIG_NOT_FOUND")).toBe(true);
    const dir = await loadConfig(t.dir).catch((e: unknown) => e);
    expect(isKerfError(dir, "CONFIG_INVALID")).toBe(true);
    expect((dir as Error).message).toContain("not a regular file");
    const empty = await loadError(t, "# nothing here\n");
    expect(lines(empty, t.dir)).toEqual(["kerf.yaml:1:1: wrong type (found an empty value; expected a mapping)"]);
  });

  it("a field that is a YAML list used as a key is refused before it becomes text", async () => {
    const err = await loadError(t, `${GOOD_CONFIG}? [a, b]\n: 1\n`);
    expect(lines(err, t.dir)).toEqual(["kerf.yaml:9:3: a key must be a plain name, not a list or mapping"]);
  });

  it("too many aliases (a billion-laughs file) is refused, not expanded", async () => {
    const bomb = ["a: &a [x, x, x, x, x, x, x, x, x, x]"];
    for (let i = 1; i < 12; i++) bomb.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(10).fill(`*${String.fromCharCode(96 + i)}`).join(", ")}]`);
    const err = await loadError(t, `${GOOD_CONFIG}${bomb.join("\n")}\n`);
    expect(lines(err, t.dir)[0]).toMatch(/^kerf\.yaml:1:1: YAML error: Excessive alias count/);
  });
});

describe("formatConfigErrors", () => {
  it("prints every detail line and then the summary", async () => {
    const err = await loadError(t, GOOD_CONFIG.replace("saw-1", "saw 1"));
    const text = formatConfigErrors(err);
    expect(text.split("\n")).toHaveLength(3);
    expect(text).toMatch(/kerf\.yaml:4:9: machines\[0\]\.id: not a valid machine id/);
    expect(text).toMatch(/mapping\.yaml:2:3: machines\.saw-1: not a machine of the config/);
    expect(text.split("\n")[2]).toMatch(/^kerf: .*: 2 errors$/);
  });

  it("GOOD_CONFIG and GOOD_MAPPING are valid (the base of these tests)", async () => {
    await t.write("kerf.yaml", GOOD_CONFIG);
    await t.write("mapping.yaml", GOOD_MAPPING);
    await expect(loadConfig(path.join(t.dir, "kerf.yaml"))).resolves.toBeTruthy();
  });
});
