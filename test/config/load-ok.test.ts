import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Writable } from "node:stream";
import { inspect } from "node:util";
import path from "node:path";
import { pino } from "pino";
import { loadConfig } from "../../src/config/load.ts";
import { Secret } from "../../src/config/secrets.ts";
import { GOOD_CONFIG, GOOD_MAPPING, PIN_A, PIN_B, load, tempDir, type TempDir } from "./helpers.ts";

let t: TempDir;
beforeEach(async () => {
  t = await tempDir();
});
afterEach(async () => {
  await t.cleanup();
});

const PASSWORD = "correct-horse-battery-staple";

describe("a valid config", () => {
  it("fills every default", async () => {
    const loaded = await load(t, GOOD_CONFIG);
    expect(loaded.config).toEqual({
      instance: "kerf-test",
      log: { level: "info" },
      mapping: path.join(t.dir, "mapping.yaml"),
      machines: [
        {
          id: "saw-1",
          endpoint: "opc.tcp://127.0.0.1:4840",
          security: { mode: "SignAndEncrypt", policy: "Basic256Sha256", allowDeprecated: false },
          user: { type: "anonymous" },
          connectTimeoutMs: 10000,
          sessionTimeoutMs: 60000,
          trustOnFirstUse: false,
          allowHostnameMismatch: false,
        },
      ],
      cloud: {
        url: "https://cloud.example.com/",
        pins: [PIN_A, PIN_B],
        concurrency: 2,
        requestTimeoutMs: 30000,
        retry: { initialDelayMs: 500, maxDelayMs: 30000 },
        batch: { maxItems: 5000, maxBytes: 1048576 },
      },
      buffer: { maxBytes: 1073741824, whenFull: "dropOldest" },
      status: { metricsIntervalSeconds: 5 },
    });
    expect(loaded.file).toBe(path.join(t.dir, "kerf.yaml"));
    expect(loaded.mappingFile).toBe(path.join(t.dir, "mapping.yaml"));
    expect(loaded.warnings).toEqual([]);
    const group = loaded.mapping.machines["saw-1"]!.groups[0]!;
    expect(group).toEqual({
      name: "fast",
      publishingInterval: 1000,
      samplingInterval: 1000,
      queueSize: 10,
      discardOldest: true,
      nodes: [{ key: "spindle.speed", node: "ns=2;s=Spindle.Speed", samplingInterval: 1000, queueSize: 10, discardOldest: true }],
    });
  });

  it("resolves per-node settings: node value, else group value, else publishingInterval", async () => {
    const loaded = await load(
      t,
      GOOD_CONFIG,
      `machines:
  saw-1:
    groups:
      - name: g
        publishingInterval: 200
        queueSize: 5
        discardOldest: false
        nodes:
          - { key: a, node: "i=1" }
          - { key: b, node: "i=2", samplingInterval: 0, queueSize: 1, discardOldest: true, unit: rpm }
`,
    );
    const g = loaded.mapping.machines["saw-1"]!.groups[0]!;
    expect(g.samplingInterval).toBe(200);
    expect(g.nodes).toEqual([
      { key: "a", node: "i=1", samplingInterval: 200, queueSize: 5, discardOldest: false },
      { key: "b", node: "i=2", samplingInterval: 0, queueSize: 1, discardOldest: true, unit: "rpm" },
    ]);
  });

  it("parses sizes with units", async () => {
    const loaded = await load(t, `${GOOD_CONFIG}  batch: { maxBytes: 2MB }\nbuffer: { maxBytes: 1.5GiB }\n`);
    expect(loaded.config.cloud.batch.maxBytes).toBe(2_000_000);
    expect(loaded.config.buffer.maxBytes).toBe(1.5 * 1024 ** 3);
  });

  it("returns every path absolute, relative ones resolved against the config's directory", async () => {
    await t.write("conf/secrets/pw", `${PASSWORD}\n`, 0o600);
    await t.write("conf/ca.pem", "-----BEGIN CERTIFICATE-----\n");
    await t.write("conf/user.crt", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    await t.write("conf/user.key", "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n", 0o600);
    await t.write("conf/maps/m.yaml", GOOD_MAPPING.replace("saw-1", "saw-1:\n    groups: [{ name: g, nodes: [{ key: k, node: \"i=1\" }] }]\n  saw-2"));
    await t.write(
      "conf/kerf.yaml",
      `instance: kerf-test
mapping: maps/m.yaml
machines:
  - id: saw-1
    endpoint: opc.tcp://127.0.0.1:4840
    user: { type: username, username: op, passwordFile: secrets/pw }
  - id: saw-2
    endpoint: opc.tcp://127.0.0.1:4841
    user: { type: certificate, certificateFile: ./user.crt, privateKeyFile: ./user.key }
cloud:
  url: https://cloud.example.com/
  pins: ["${PIN_A}", "${PIN_B}"]
  caFile: ca.pem
  identity: { certificateFile: id/cert.pem, privateKeyFile: /abs/key.pem }
`,
    );
    // Load through a relative path, from another working directory's point of view.
    const rel = path.relative(process.cwd(), path.join(t.dir, "conf/kerf.yaml"));
    const loaded = await loadConfig(rel);
    const conf = path.join(t.dir, "conf");
    expect(loaded.file).toBe(path.join(conf, "kerf.yaml"));
    expect(loaded.mappingFile).toBe(path.join(conf, "maps/m.yaml"));
    expect(loaded.config.mapping).toBe(path.join(conf, "maps/m.yaml"));
    expect(loaded.config.machines[0]!.user).toEqual({ type: "username", username: "op", passwordFile: path.join(conf, "secrets/pw") });
    expect(loaded.config.machines[1]!.user).toEqual({ type: "certificate", certificateFile: path.join(conf, "user.crt"), privateKeyFile: path.join(conf, "user.key") });
    expect(loaded.config.cloud.caFile).toBe(path.join(conf, "ca.pem"));
    expect(loaded.config.cloud.identity).toEqual({ certificateFile: path.join(conf, "id/cert.pem"), privateKeyFile: "/abs/key.pem" });
    // The trailing newline of the password file is not part of the password.
    expect(loaded.secrets.machines["saw-1"]!.password!.reveal()).toBe(PASSWORD);
    expect(loaded.secrets.machines["saw-2"]!.userCertificatePem).toContain("BEGIN CERTIFICATE");
    expect(loaded.secrets.machines["saw-2"]!.userPrivateKey!.reveal()).toContain("BEGIN PRIVATE KEY");
  });

  it("warns about a single pin, a machine without mapping and a password file others can read", async () => {
    await t.write("pw", PASSWORD, 0o644);
    const loaded = await load(
      t,
      `instance: kerf-test
mapping: ./mapping.yaml
machines:
  - id: saw-1
    endpoint: opc.tcp://127.0.0.1:4840
    user: { type: username, username: op, passwordFile: pw }
  - id: saw-2
    endpoint: opc.tcp://127.0.0.1:4841
cloud:
  url: https://cloud.example.com/
  pins: ["${PIN_A}"]
`,
    );
    expect(loaded.warnings.map((w) => w.replace(t.dir + path.sep, ""))).toEqual([
      "kerf.yaml:6:57: machines[0].user.passwordFile: the password file can be read by other users (found mode 0644; expected 0600 or 0400)",
      `kerf.yaml:7:9: machines[1].id: machine "saw-2" has no entry in the mapping, so nothing will be read from it`,
      "kerf.yaml:11:9: cloud.pins: only one pin; add a backup pin (a key that is not yet in use) so that a key change on the cloud does not lock this connector out",
    ]);
  });

  it("mapping machine ids such as 'constructor' find nothing inherited", async () => {
    const loaded = await load(t, GOOD_CONFIG);
    expect(loaded.mapping.machines["constructor"]).toBeUndefined();
    expect(loaded.mapping.machines["toString"]).toBeUndefined();
  });
});

describe("secrets never reach text", () => {
  async function loadWithPassword(): Promise<Awaited<ReturnType<typeof load>>> {
    process.env.KERF_TEST_OPCUA_PASSWORD = PASSWORD;
    try {
      return await load(
        t,
        `instance: kerf-test
mapping: ./mapping.yaml
machines:
  - id: saw-1
    endpoint: opc.tcp://127.0.0.1:4840
    user: { type: username, username: op, passwordEnv: KERF_TEST_OPCUA_PASSWORD }
cloud:
  url: https://cloud.example.com/
  pins: ["${PIN_A}", "${PIN_B}"]
`,
      );
    } finally {
      delete process.env.KERF_TEST_OPCUA_PASSWORD;
    }
  }

  it("Secret hides its value from String, JSON and inspect, and reveals it on request", () => {
    const s = new Secret(PASSWORD);
    expect(`${s}`).toBe("[redacted]");
    expect(String(s)).toBe("[redacted]");
    expect(JSON.stringify({ s })).toBe('{"s":"[redacted]"}');
    expect(inspect(s)).toBe("[redacted]");
    expect(inspect({ deep: { s } }, { depth: 10, showHidden: true })).not.toContain(PASSWORD);
    expect(Object.keys(s)).toEqual([]);
    expect(s.reveal()).toBe(PASSWORD);
  });

  it("JSON.stringify, util.inspect and a pino line of the loaded config never contain the password", async () => {
    const loaded = await loadWithPassword();
    expect(loaded.secrets.machines["saw-1"]!.password!.reveal()).toBe(PASSWORD);

    expect(JSON.stringify(loaded)).not.toContain(PASSWORD);
    expect(JSON.stringify(loaded)).toContain("[redacted]");
    expect(inspect(loaded, { depth: Infinity, showHidden: true, getters: true })).not.toContain(PASSWORD);

    let out = "";
    const sink = new Writable({
      write(chunk, _enc, done) {
        out += String(chunk);
        done();
      },
    });
    const log = pino({ level: "info" }, sink);
    log.info({ loaded }, "config loaded");
    log.info({ secrets: loaded.secrets, password: loaded.secrets.machines["saw-1"]!.password }, "secrets");
    log.info(`password is ${loaded.secrets.machines["saw-1"]!.password}`);
    log.flush();
    await new Promise((r) => setImmediate(r));
    expect(out).toContain("config loaded");
    expect(out.split("\n").filter(Boolean)).toHaveLength(3);
    expect(out).not.toContain(PASSWORD);
  });
});
