import { spawnSync } from "node:child_process";
import { createSecretKey, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { DurableBuffer } from "../../src/buffer/buffer.ts";
import { silentLogger } from "../../src/log.ts";
import { batch } from "../buffer/helpers.ts";
import { tempDir } from "../helpers/env.ts";

const repo = path.resolve(import.meta.dirname, "../..");
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

describe("kerf run with bad input", () => {
  it("exits non-zero with file:line errors and starts nothing", async () => {
    const tmp = await tempDir();
    cleanups.push(tmp.cleanup);
    const config = path.join(tmp.dir, "kerf.yaml");
    writeFileSync(
      config,
      [
        "instance: kerf-bad",
        "mapping: ./mapping.yaml",
        "machines:",
        "  - id: saw-1",
        "    endpoint: opc.tcp://127.0.0.1:4840",
        "    user: { type: username, username: op, passwordFile: ./missing-secret }",
        "cloud:",
        "  url: https://127.0.0.1:1/",
        "  pins: [sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=]",
        "  colour: blue",
        "",
      ].join("\n"),
    );
    writeFileSync(path.join(tmp.dir, "mapping.yaml"), "machines:\n  saw-1:\n    groups:\n      - name: g\n        nodes:\n          - { key: a, node: 'ns=2;i=abc' }\n");
    const stateDir = path.join(tmp.dir, "state");
    const r = spawnSync(process.execPath, [path.join(repo, "bin/kerf.js"), "run", "--config", config, "--state-dir", stateDir], { encoding: "utf8", timeout: 30_000 });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/kerf\.yaml:6:\d+: .*passwordFile/);
    expect(r.stderr).toMatch(/kerf\.yaml:10:\d+: cloud.*colour/);
    expect(r.stderr).toMatch(/mapping\.yaml:6:\d+: .*node.*abc/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    // Nothing started: no state folder, no buffer.
    expect(existsSync(stateDir)).toBe(false);
  });
});

describe("kerf run with an encrypted buffer", () => {
  it("refuses to start with another key, naming the key file, and the buffer keeps every batch", async () => {
    const tmp = await tempDir();
    cleanups.push(tmp.cleanup);
    const stateDir = path.join(tmp.dir, "state");
    const bufferFile = path.join(stateDir, "buffer.db");
    const written = randomBytes(32);
    const buffer = DurableBuffer.open({ path: bufferFile, maxBytes: 10_000_000, logger: silentLogger(), encryption: { key: createSecretKey(written) } });
    const ids = [1, 2, 3].map((seq) => buffer.append(batch(10, seq)));
    buffer.close();

    // After a redeploy, another instance's key is mounted.
    mkdirSync(path.join(tmp.dir, "secrets"));
    const keyFile = path.join(tmp.dir, "secrets", "buffer.key");
    writeFileSync(keyFile, randomBytes(32).toString("hex"), { mode: 0o600 });
    const config = path.join(tmp.dir, "kerf.yaml");
    writeFileSync(
      config,
      [
        "instance: kerf-crypt",
        "mapping: ./mapping.yaml",
        "machines:",
        "  - id: saw-1",
        "    endpoint: opc.tcp://127.0.0.1:1",
        "cloud:",
        "  url: https://127.0.0.1:1/",
        "  pins: [sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=, sha256/BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA=]",
        "buffer:",
        "  encryption:",
        "    keyFile: ./secrets/buffer.key",
        "",
      ].join("\n"),
    );
    writeFileSync(path.join(tmp.dir, "mapping.yaml"), "machines:\n  saw-1:\n    groups:\n      - name: g\n        nodes:\n          - { key: a, node: 'ns=2;i=1' }\n");
    const r = spawnSync(process.execPath, [path.join(repo, "bin/kerf.js"), "run", "--config", config, "--state-dir", stateDir], { encoding: "utf8", timeout: 60_000 });
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toContain(`kerf: buffer ${bufferFile} was encrypted with another key: ${keyFile} does not open it (its key check fails); mount the key it was written with (nothing was read or dropped)`);
    expect(r.stderr).toContain("it holds 3 batches not yet sent");
    expect(r.stderr).not.toMatch(/\n\s+at /);

    const again = DurableBuffer.open({ path: bufferFile, maxBytes: 10_000_000, logger: silentLogger(), encryption: { key: createSecretKey(written) } });
    try {
      expect(again.next(10).map((b) => b.id)).toEqual(ids);
      expect(again.stats().droppedItems).toBe(0);
    } finally {
      again.close();
    }
  });
});
