import { mkdirSync, readFileSync, symlinkSync, writeFileSync, existsSync } from "node:fs";
import path from "node:path";
import * as tar from "tar";
import { afterEach, describe, expect, it } from "vitest";
import { unpackBundle, unpackedDir } from "../../src/update/unpack.ts";
import { runCleanups, tempDir, type Cleanups } from "../uplink/helpers.ts";

const cleanup: Cleanups = [];
afterEach(() => runCleanups(cleanup));

async function setup() {
  const { dir, remove } = await tempDir("kerf-unpack-");
  cleanup.push(remove);
  const src = path.join(dir, "src", "inner");
  mkdirSync(path.join(src, "bin"), { recursive: true });
  writeFileSync(path.join(src, "kerf-bundle.json"), JSON.stringify({ version: "1.2.0" }));
  writeFileSync(path.join(src, "bin", "kerf.js"), "// entry\n");
  writeFileSync(path.join(dir, "src", "outside.txt"), "outside\n");
  const state = path.join(dir, "state");
  const pack = async (entries: string[], o: { preservePaths?: boolean } = {}) => {
    const file = path.join(dir, `b-${Math.random()}.tar.gz`);
    await tar.c({ gzip: true, file, cwd: src, ...o }, entries);
    return file;
  };
  return { dir, src, state, pack };
}

describe("unpacking a signed bundle", () => {
  it("unpacks plain files and checks the manifest's version against the signed one", async () => {
    const s = await setup();
    const file = await s.pack(["kerf-bundle.json", "bin"]);
    const dir = await unpackBundle(s.state, file, "1.2.0");
    expect(dir).toBe(path.join(unpackedDir(s.state), "1.2.0"));
    expect(readFileSync(path.join(dir, "bin", "kerf.js"), "utf8")).toBe("// entry\n");
    await expect(unpackBundle(s.state, file, "1.3.0")).rejects.toThrow(/kerf-bundle.json says version "1.2.0", the signed metadata 1.3.0/);
  });

  it("leaves the same tarball's unpacked copy alone (the launcher may be copying it) and replaces another's", async () => {
    const s = await setup();
    const file = await s.pack(["kerf-bundle.json", "bin"]);
    const dir = await unpackBundle(s.state, file, "1.2.0", "a".repeat(64));
    writeFileSync(path.join(dir, "copying"), "");
    await unpackBundle(s.state, file, "1.2.0", "a".repeat(64));
    expect(existsSync(path.join(dir, "copying"))).toBe(true);
    await unpackBundle(s.state, file, "1.2.0", "b".repeat(64));
    expect(existsSync(path.join(dir, "copying"))).toBe(false);
  });

  it.each([
    ["a symbolic link", (s: Awaited<ReturnType<typeof setup>>) => (symlinkSync("/etc/passwd", path.join(s.src, "link")), s.pack(["kerf-bundle.json", "link"])), /'link' is a SymbolicLink/],
    ["a path with '..'", (s: Awaited<ReturnType<typeof setup>>) => s.pack(["kerf-bundle.json", "../outside.txt"], { preservePaths: true }), /leads out of the bundle/],
    ["an absolute path", (s: Awaited<ReturnType<typeof setup>>) => s.pack(["kerf-bundle.json", path.join(s.dir, "src", "outside.txt")], { preservePaths: true }), /absolute path/],
    ["node_modules", (s: Awaited<ReturnType<typeof setup>>) => (mkdirSync(path.join(s.src, "node_modules")), writeFileSync(path.join(s.src, "node_modules", "x.js"), ""), s.pack(["kerf-bundle.json", "node_modules"])), /carries no node_modules/],
  ] as const)("refuses %s and writes nothing", async (_name, make, reason) => {
    const s = await setup();
    const file = await make(s);
    await expect(unpackBundle(s.state, file, "1.2.0")).rejects.toThrow(reason);
    expect(existsSync(path.join(unpackedDir(s.state), "1.2.0"))).toBe(false);
    expect(existsSync(path.join(s.state, "outside.txt"))).toBe(false);
  });
});
