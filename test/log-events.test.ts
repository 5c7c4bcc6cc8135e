import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { LOG_EVENTS } from "../src/log-events.ts";

const SRC = path.resolve(import.meta.dirname, "../src");

/** Every `event: "code"` written in the connector's source, with the file that writes it. */
function eventsInSource(): Map<string, string[]> {
  const found = new Map<string, string[]>();
  for (const entry of readdirSync(SRC, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !entry.name.endsWith(".ts") || entry.name === "log-events.ts") continue;
    const file = path.join(entry.parentPath, entry.name);
    for (const m of readFileSync(file, "utf8").matchAll(/\bevent: "([a-z_]+)"/g)) {
      found.set(m[1]!, [...(found.get(m[1]!) ?? []), path.relative(SRC, file)]);
    }
  }
  return found;
}

describe("log event codes", () => {
  it("every event the source logs is declared in src/log-events.ts, and every declared one is logged", () => {
    const used = eventsInSource();
    const undeclared = [...used.keys()].filter((e) => !(e in LOG_EVENTS)).map((e) => `${e} (${used.get(e)!.join(", ")})`);
    expect(undeclared).toEqual([]);
    expect(Object.keys(LOG_EVENTS).filter((e) => !used.has(e))).toEqual([]);
  });
});
