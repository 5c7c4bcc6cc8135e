import { spawnSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
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
