import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { GOOD_CONFIG, GOOD_MAPPING, tempDir, type TempDir } from "../config/helpers.ts";
import { kerf } from "./helpers.ts";

let t: TempDir;
beforeEach(async () => {
  t = await tempDir();
});
afterEach(async () => {
  await t.cleanup();
});

describe("a state directory that cannot be created or written", () => {
  it("kerf run says which path and why, and exits 1 instead of hanging", async () => {
    const config = await t.write("kerf.yaml", GOOD_CONFIG);
    await t.write("mapping.yaml", GOOD_MAPPING);
    const file = await t.write("a-file", "");
    const [proc, belowFile] = await Promise.all([
      kerf(["run", "--config", config, "--state-dir", "/proc/kerf"]),
      kerf(["run", "--config", config, "--state-dir", path.join(file, "state")]),
    ]);
    expect(proc.signal).toBeNull(); // not killed for hanging
    expect(proc.stderr).toBe(
      "kerf: cannot use the state directory /proc/kerf: cannot create /proc/kerf: the file system does not allow new entries there (ENOENT)\n" +
        "  kerf keeps its buffer, certificates and health report there: give a directory this user can write, with --state-dir DIR or KERF_STATE_DIR\n",
    );
    expect(proc.code).toBe(1);
    expect(belowFile.stderr).toMatch(new RegExp(`^kerf: cannot use the state directory ${file}/state: ${file} is a file, not a directory\\n`));
    expect(belowFile.code).toBe(1);
  });

  it("every command that keeps state says the same, before it starts anything", async () => {
    await t.write("kerf.yaml", GOOD_CONFIG);
    const runs = await Promise.all(
      [
        ["simulate", "--port", "0"],
        ["devcloud"],
        ["devcloud", "--issue-client", "line-1"],
        ["demo", "--seconds", "1"],
        ["endpoints", "opc.tcp://127.0.0.1:1", "--config", path.join(t.dir, "kerf.yaml")],
        ["browse", "opc.tcp://127.0.0.1:1", "--config", path.join(t.dir, "kerf.yaml")],
        ["trust", "accept", "0123456789abcdef", "--config", path.join(t.dir, "kerf.yaml")],
      ].map((args) => kerf([...args, "--state-dir", "/proc/kerf"]).then((r) => ({ args, r }))),
    );
    for (const { args, r } of runs) {
      expect(r.stderr, args.join(" ")).toMatch(/^kerf: cannot use the state directory \/proc\/kerf(\/[a-z-]+)?: cannot create \/proc\/kerf: .*\(ENOENT\)\n/);
      expect(r.code, args.join(" ")).toBe(1);
    }
  });

  it("a directory that does not exist yet is created, parents and all", async () => {
    const r = await kerf(["devcloud", "--issue-client", "line-1", "--state-dir", path.join(t.dir, "new", "state")]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toContain(`certificateFile: ${path.join(t.dir, "new", "state", "devcloud", "clients", "line-1")}`);
    expect(r.code).toBe(0);
  });
});
