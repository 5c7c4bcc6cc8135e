import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT } from "./helpers.ts";

describe(".ci/run", () => {
  it("type-checks before the tests, and stops at the first failing step", () => {
    // Node strips types without checking them: without this step a type error passes CI.
    const steps = readFileSync(path.join(ROOT, ".ci/run"), "utf8")
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l !== "" && !l.startsWith("#"));
    expect(steps).toContain("set -euo pipefail");
    const typecheck = steps.indexOf("npm run typecheck");
    expect(typecheck).toBeGreaterThan(steps.indexOf("set -euo pipefail"));
    expect(typecheck).toBeLessThan(steps.indexOf("npm test"));
    const pkg = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as { scripts: Record<string, string> };
    expect(pkg.scripts.typecheck).toBe("tsc --noEmit");
  });
});
