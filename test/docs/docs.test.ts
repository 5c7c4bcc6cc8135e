import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { COMMANDS, cliDocIsCurrent } from "../../src/cli/write-docs.ts";
import { configDocIsCurrent, generateConfigDoc } from "../../src/config/write-docs.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

describe("generated references", () => {
  it("docs/config.md is what `npm run docs` generates from the zod schema now", async () => {
    expect(await configDocIsCurrent(), "run npm run docs").toBe(true);
    const doc = generateConfigDoc();
    // Fields at several depths, a default and a union variant, so a broken walker cannot pass.
    expect(doc).toContain("| `cloud.pins` |");
    expect(doc).toContain("| `buffer.maxBytes` | number or string (pattern) |  | `\"1GiB\"` |");
    expect(doc).toContain("| `machines[].user.passwordFile` |");
    expect(doc).toContain("| `machines.<machine id>.groups[].nodes[].key` |");
  });

  it("docs/config.md describes every field", () => {
    const rows = generateConfigDoc().split("\n").filter((l) => l.startsWith("| `"));
    expect(rows.length).toBeGreaterThan(100);
    const blank = rows.filter((l) => l.split(" | ").at(-1)!.replace(/\|\s*$/, "").trim() === "").map((l) => l.split(" | ")[0]);
    expect(blank).toEqual([]);
  });

  it("docs/cli.md is what `npm run docs` generates from the commands' usage now", async () => {
    expect(await cliDocIsCurrent(), "run npm run docs").toBe(true);
  });

  it("docs/cli.md covers every command src/main.ts dispatches", async () => {
    const main = await readFile(path.join(ROOT, "src/main.ts"), "utf8");
    const dispatched = [...main.matchAll(/import\("\.\/cli\/([a-z-]+)\.ts"\)\)\.run/g)].map((m) => m[1]);
    expect(dispatched.length).toBeGreaterThan(10);
    expect([...COMMANDS].sort()).toEqual(dispatched.sort());
  });
});

describe("test paths named in the documentation", () => {
  it("exist, so the security tables cannot name a test that is gone", async () => {
    const files = ["README.md", ...(await readdir(path.join(ROOT, "docs"))).filter((f) => f.endsWith(".md")).map((f) => `docs/${f}`)];
    const named: string[] = [];
    const missing: string[] = [];
    for (const file of files) {
      const text = await readFile(path.join(ROOT, file), "utf8");
      for (const m of text.matchAll(/\btest\/[A-Za-z0-9_./-]*[A-Za-z0-9_]/g)) {
        named.push(m[0]);
        const exists = await stat(path.join(ROOT, m[0])).then(() => true, () => false);
        if (!exists) missing.push(`${file}: ${m[0]}`);
      }
    }
    expect(named.length).toBeGreaterThan(20);
    expect(missing).toEqual([]);
  });
});
