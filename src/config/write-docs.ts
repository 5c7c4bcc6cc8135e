import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { ConfigSchema, MappingSchema } from "./schema.ts";

/**
 * docs/config.md, the config and mapping reference, derived from the same JSON Schema as
 * config/*.schema.json (`npm run docs`), so the reference cannot say what the loader does not do.
 * A test fails when the committed file differs from what this produces.
 */
export const CONFIG_DOC = fileURLToPath(new URL("../../docs/config.md", import.meta.url));

type Json = { [key: string]: unknown };
interface Row {
  path: string;
  type: string;
  required: boolean;
  default: string;
  description: string;
}

const cell = (text: string) => text.replaceAll("|", "\\|").replaceAll("\n", " ");
const code = (text: string) => (text === "" ? "" : `\`${text}\``);

function typeOf(s: Json): string {
  if ("const" in s) return `${JSON.stringify(s.const)}`;
  if (Array.isArray(s.enum)) return s.enum.map((v) => JSON.stringify(v)).join(" or ");
  if (Array.isArray(s.anyOf)) return (s.anyOf as Json[]).map(typeOf).join(" or ");
  if (Array.isArray(s.oneOf)) return "object, one of the variants below";
  const base = typeof s.type === "string" ? s.type : "any";
  if (base === "array") return `list of ${typeOf((s.items ?? {}) as Json)}`;
  if (base === "string" && typeof s.pattern === "string" && !Array.isArray(s.enum)) return "string (pattern)";
  const bounds = [s.minimum !== undefined ? `≥ ${s.minimum}` : "", s.maximum !== undefined ? `≤ ${s.maximum}` : "", s.exclusiveMinimum !== undefined ? `> ${s.exclusiveMinimum}` : ""].filter(Boolean);
  return bounds.length > 0 ? `${base} (${bounds.join(", ")})` : base;
}

function defaultOf(s: Json): string {
  if (!("default" in s)) return "";
  const d = s.default;
  // An object default repeats its fields' own defaults, which have rows of their own.
  if (d !== null && typeof d === "object" && !Array.isArray(d)) return "";
  return JSON.stringify(d);
}

function rows(s: Json, at: string, required: boolean, out: Row[], note = ""): void {
  const description = [note, typeof s.description === "string" ? s.description : ""].filter(Boolean).join(" ");
  if (at !== "") out.push({ path: at, type: typeOf(s), required, default: defaultOf(s), description });
  const props = s.properties as Record<string, Json> | undefined;
  if (props) {
    const req = new Set((s.required as string[] | undefined) ?? []);
    for (const [key, child] of Object.entries(props)) rows(child, at === "" ? key : `${at}.${key}`, req.has(key), out);
  }
  // A record keyed by the user's names (machine ids): its values' fields under `<id>`.
  const extra = s.additionalProperties;
  if (extra && typeof extra === "object") {
    const value = { description: "One entry per machine id of the config.", ...(extra as Json) };
    rows(value, `${at}.<${at.endsWith("machines") ? "machine id" : "name"}>`, false, out);
  }
  if (s.type === "array" && s.items && typeof s.items === "object") {
    const items = s.items as Json;
    if (items.properties || items.oneOf) for (const [key, child] of Object.entries((items.properties ?? {}) as Record<string, Json>)) rows(child, `${at}[].${key}`, ((items.required as string[] | undefined) ?? []).includes(key), out);
    if (items.oneOf) variantRows(items.oneOf as Json[], `${at}[]`, out);
  }
  if (Array.isArray(s.oneOf)) variantRows(s.oneOf as Json[], at, out);
}

/** A discriminated union (machines[].user): each variant's fields, marked with the variant they belong to. */
function variantRows(variants: Json[], at: string, out: Row[]): void {
  for (const v of variants) {
    const props = (v.properties ?? {}) as Record<string, Json>;
    const tag = Object.entries(props).find(([, p]) => "const" in p);
    const note = tag ? `(when \`${tag[0]}: ${String(tag[1].const)}\`)` : "";
    const req = new Set((v.required as string[] | undefined) ?? []);
    for (const [key, child] of Object.entries(props)) {
      if (tag && key === tag[0]) {
        if (out.some((r) => r.path === `${at}.${key}`)) continue;
        const all = variants.map((x) => (x.properties as Record<string, Json>)[key]?.const).filter((c) => c !== undefined);
        out.push({ path: `${at}.${key}`, type: all.map((c) => JSON.stringify(c)).join(" or "), required: req.has(key), default: "", description: "Selects the variant." });
        continue;
      }
      rows(child, `${at}.${key}`, req.has(key), out, note);
    }
  }
}

function table(schema: z.ZodType): string {
  const json = z.toJSONSchema(schema, { io: "input", target: "draft-2020-12" }) as Json;
  const out: Row[] = [];
  rows(json, "", true, out);
  const lines = ["| Field | Type | Required | Default | Description |", "| --- | --- | --- | --- | --- |"];
  for (const r of out) lines.push(`| ${code(r.path)} | ${cell(r.type)} | ${r.required ? "yes" : ""} | ${cell(code(r.default))} | ${cell(r.description)} |`);
  return lines.join("\n");
}

export function generateConfigDoc(): string {
  return `# Config reference

Generated by \`npm run docs\` from the zod schema in src/config/schema.ts (the same source as
config/kerf.schema.json); do not edit by hand. A test fails when this file is out of date.
Relative paths are relative to the config file's directory. Sizes take a number of bytes or a
string such as \`"256 MiB"\`. An annotated example is config/kerf.example.yaml; \`kerf validate
--config FILE\` checks a file and names file, line and field of every error.

## Config file (\`kerf.yaml\`)

${table(ConfigSchema)}

## Mapping file

${table(MappingSchema)}
`;
}

/** True when the committed docs/config.md is what the generator produces now. */
export async function configDocIsCurrent(file = CONFIG_DOC): Promise<boolean> {
  return (await readFile(file, "utf8").catch(() => "")) === generateConfigDoc();
}

if (import.meta.main) {
  await writeFile(CONFIG_DOC, generateConfigDoc());
  process.stdout.write(`wrote ${path.relative(process.cwd(), CONFIG_DOC)}\n`);
}
