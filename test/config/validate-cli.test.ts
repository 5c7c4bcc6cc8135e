import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { GOOD_CONFIG, GOOD_MAPPING, tempDir, type TempDir } from "./helpers.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a real child process and kills it with SIGKILL if it hangs. */
function run(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const kerf = (...args: string[]) => run(process.execPath, ["bin/kerf.js", ...args]);

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
    const r = await run("npx", ["kerf", "validate", "--config", file]);
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
    expect(syntax.stderr).toMatch(new RegExp(`^${broken.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:3:1: YAML syntax error: `, "m"));

    const missing = await kerf("validate", "--config", path.join(t.dir, "absent.yaml"));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("absent.yaml: no such file");

    const usage = await kerf("validate");
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("--config FILE is required");

    const unknown = await kerf("validate", "--confg", "x");
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/validate: Unknown option '--confg'/);

    for (const r of [syntax, missing, usage, unknown]) expect(r.stderr).not.toContain("    at ");
  });
});
