import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { ConfigSchema, MappingSchema } from "./schema.ts";

/**
 * config/kerf.schema.json and config/mapping.schema.json, derived from the zod schemas
 * (`npm run schema`). Editors use them for completion; a test keeps them current.
 * "input" describes the file as written: fields with defaults are optional.
 */
export const SCHEMA_DIR = fileURLToPath(new URL("../../config/", import.meta.url));

export function generateSchemas(): Record<string, string> {
  const render = (schema: z.ZodType) => `${JSON.stringify(z.toJSONSchema(schema, { io: "input", target: "draft-2020-12" }), null, 2)}\n`;
  return {
    "kerf.schema.json": render(ConfigSchema),
    "mapping.schema.json": render(MappingSchema),
  };
}

/** Names of the committed schema files whose content differs from what the generator produces now. */
export async function staleSchemas(dir = SCHEMA_DIR): Promise<string[]> {
  const stale: string[] = [];
  for (const [name, text] of Object.entries(generateSchemas())) {
    const current = await readFile(path.join(dir, name), "utf8").catch(() => "");
    if (current !== text) stale.push(name);
  }
  return stale;
}

if (import.meta.main) {
  for (const [name, text] of Object.entries(generateSchemas())) {
    await writeFile(path.join(SCHEMA_DIR, name), text);
    process.stdout.write(`wrote ${path.join("config", name)}\n`);
  }
}
