import { spawnSync } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";

const main = path.resolve(import.meta.dirname, "../../src/bench/main.ts");
const bench = (...args: string[]) => spawnSync(process.execPath, [main, ...args], { encoding: "utf8", timeout: 30_000 });

describe("npm run bench's command line", () => {
  it("answers --help with its usage and exit 0", () => {
    const r = bench("--help");
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^usage: npm run bench -- /);
  });

  it.each([
    [["--bogus"], /^bench: unknown option '--bogus'/],
    [["--scenario", "1m"], /^bench: unknown scenario '1m'; known: 10k, 50k, 100k-items, 10k-hostile, all/],
    [["--nodes", "many"], /^bench: --nodes must be a whole number ≥ 0, got 'many'/],
    [["--cpu-hogs", "1.5"], /^bench: --cpu-hogs must be a whole number ≥ 0, got '1.5'/],
    [["stray"], /^bench: unexpected argument 'stray'/],
    [["--buffer-encryption=yes"], /^bench: --buffer-encryption takes no value/],
  ])("refuses %j in one line with the usage, exit 2, no stack trace", (args, message) => {
    const r = bench(...args);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).toContain("usage: npm run bench");
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});
