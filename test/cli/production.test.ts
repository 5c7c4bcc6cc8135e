import { readdirSync, readFileSync } from "node:fs";
import { builtinModules } from "node:module";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { DEVELOPMENT_SOURCES } from "../../src/cli/development.ts";
import { ROOT } from "./helpers.ts";

const pkg = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as { dependencies: Record<string, string> };
/** The development commands' own modules: main.ts loads them only after cli/development.ts said yes. */
const DEVELOPMENT_COMMANDS = ["src/cli/simulate.ts", "src/cli/devcloud.ts", "src/cli/demo.ts", "src/cli/bench.ts"];
const isDevelopment = (file: string) =>
  DEVELOPMENT_COMMANDS.includes(file) || DEVELOPMENT_SOURCES.some((dir) => file.startsWith(`src/${dir}/`));

/** Every module specifier a file names: static imports, re-exports, side-effect imports and import("…"). */
function specifiers(file: string): string[] {
  const text = readFileSync(path.join(ROOT, file), "utf8");
  const patterns = [/^(?:import|export)\b[^;]*?\bfrom\s*"([^"]+)"/gm, /^import\s*"([^"]+)"/gm, /\bimport\(\s*"([^"]+)"\s*\)/g];
  return patterns.flatMap((p) => [...text.matchAll(p)].map((m) => m[1]!));
}

/** The package a bare specifier names ("@scope/name/sub" → "@scope/name"). */
const packageOf = (s: string) => s.split("/").slice(0, s.startsWith("@") ? 2 : 1).join("/");

const productFiles = readdirSync(path.join(ROOT, "src"), { recursive: true, encoding: "utf8" })
  .filter((f) => f.endsWith(".ts"))
  .map((f) => `src/${f.split(path.sep).join("/")}`)
  .filter((f) => !isDevelopment(f));

describe("the production install", () => {
  it("holds every package the product imports, and no other", () => {
    const imported = new Set<string>();
    for (const file of productFiles) {
      for (const s of specifiers(file)) {
        if (s.startsWith(".") || s.startsWith("node:") || builtinModules.includes(s)) continue;
        imported.add(packageOf(s));
        expect(pkg.dependencies, `${file} imports ${s}`).toHaveProperty([packageOf(s)]);
      }
    }
    // a dependency nothing of the product imports is shipped for the development tools only
    expect(Object.keys(pkg.dependencies).filter((d) => !imported.has(d))).toEqual([]);
  });

  it("product code imports no development source, except main.ts's gated commands", () => {
    const reached: string[] = [];
    for (const file of productFiles) {
      for (const s of specifiers(file)) {
        if (!s.startsWith(".")) continue;
        const target = path.posix.join(path.posix.dirname(file), s);
        if (isDevelopment(target)) reached.push(`${file} → ${target}`);
      }
    }
    expect(reached).toEqual(["src/main.ts → src/cli/simulate.ts", "src/main.ts → src/cli/devcloud.ts", "src/main.ts → src/cli/demo.ts"]);
  });
});
