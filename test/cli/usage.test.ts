import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { kerf, ROOT, type Result } from "./helpers.ts";

const COMMANDS = ["run", "launch", "update", "validate", "simulate", "devcloud", "demo", "health", "trust", "endpoints", "browse"];

/** Runs the calls a few at a time: each child loads its command's modules (node-opcua: about a second). */
async function all(calls: string[][]): Promise<Result[]> {
  const results: Result[] = new Array(calls.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < calls.length; i = next++) results[i] = await kerf(calls[i]!);
  };
  await Promise.all([worker(), worker(), worker()]);
  return results;
}

describe("every command's usage", () => {
  it("--help and -h print the usage on stdout and exit 0", async () => {
    const results = await all(COMMANDS.flatMap((c) => [[c, "--help"], [c, "-h"]]));
    COMMANDS.forEach((c, i) => {
      const [long, short] = results.slice(2 * i, 2 * i + 2) as [Result, Result];
      expect(long.stdout, c).toMatch(new RegExp(`^usage: kerf ${c}\\b`));
      expect(long.stderr, c).toBe("");
      expect(long.code, c).toBe(0);
      expect(short, c).toEqual(long);
    });
    // --help wins over the rest of the line, and starts nothing
    const mixed = await all(["run", "trust", "browse"].map((c) => [c, "--state-dir", "/proc/kerf", "extra", "--help", "--no-such-option"]));
    mixed.forEach((r, i) => expect(r).toEqual(results[2 * COMMANDS.indexOf(["run", "trust", "browse"][i]!)]));
  });

  it("an unknown option gives one line in our words, the usage, and exit 2", async () => {
    const results = await all(COMMANDS.map((c) => [c, "--no-such-option"]));
    COMMANDS.forEach((c, i) => {
      const r = results[i]!;
      const [first, blank, ...usage] = r.stderr.split("\n");
      expect(first, c).toBe(`kerf: ${c}: unknown option '--no-such-option'`);
      expect(blank, c).toBe("");
      expect(usage.join("\n"), c).toMatch(new RegExp(`^usage: kerf ${c}\\b`));
      expect(r.stderr, c).not.toMatch(/To specify a positional argument|ERR_PARSE_ARGS|\n\s+at /);
      expect(r.stdout, c).toBe("");
      expect(r.code, c).toBe(2);
    });
  });

  it("other usage mistakes exit 2 as well, and say where the usage is", async () => {
    const [missingValue, badNumber, stray, together, none, unknown] = await all([
      ["validate", "--config"],
      ["simulate", "--port", "x"],
      ["health", "extra"],
      ["simulate", "--period", "100"],
      [],
      ["frobnicate"],
    ]);
    expect(missingValue!.stderr).toMatch(/^kerf: validate: --config needs a value\n\nusage: kerf validate/);
    expect(badNumber!.stderr).toBe("kerf: --port must be a whole number ≥ 0, got 'x'\nkerf simulate --help shows the usage\n");
    expect(stray!.stderr).toMatch(/^kerf: health: unexpected argument 'extra'\n\nusage: kerf health/);
    expect(together!.stderr).toBe("kerf: --period needs --load N (the number of counters)\nkerf simulate --help shows the usage\n");
    expect(none!.stderr).toMatch(/^kerf: missing the command\n\nusage: kerf <command>/);
    expect(unknown!.stderr).toMatch(/^kerf: unknown command 'frobnicate'\n\nusage: kerf <command>/);
    for (const r of [missingValue, badNumber, stray, together, none, unknown]) expect(r!.code).toBe(2);
  });

  it("kerf --version prints the version of package.json; kerf --help and kerf help CMD the usage", async () => {
    const { version } = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as { version: string };
    const [v, help, helpRun] = await all([["--version"], ["--help"], ["help", "run"]]);
    expect(v).toMatchObject({ code: 0, stdout: `kerf ${version}\n`, stderr: "" });
    expect(help!.stdout).toMatch(/^usage: kerf <command>/);
    expect(help!.code).toBe(0);
    expect(helpRun!.stdout).toMatch(/^usage: kerf run /);
    expect(helpRun!.code).toBe(0);
  });
});
