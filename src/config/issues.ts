import type { z } from "zod";
import { found, quoteKey } from "./describe.ts";

/**
 * zod issues as config messages. The per-parse error map below covers the generic codes
 * (types, ranges, enums); checks in schema.ts that need their own words carry them.
 */

const TYPE_NAMES: Record<string, string> = {
  object: "a mapping",
  array: "a list",
  string: "a string",
  number: "a number",
  int: "a whole number",
  boolean: "true or false",
  null: "an empty value",
};

function typeName(expected: string): string {
  return TYPE_NAMES[expected] ?? expected;
}

function oneOf(values: readonly unknown[]): string {
  return values.length === 1 ? String(values[0]) : `one of ${values.map(String).join(", ")}`;
}

function bound(kind: "≥" | ">" | "≤" | "<", limit: unknown, origin: string): string {
  if (origin === "array") return `${kind === "≥" || kind === ">" ? "at least" : "at most"} ${String(limit)} item${limit === 1 ? "" : "s"}`;
  if (origin === "string") return `${kind === "≥" || kind === ">" ? "at least" : "at most"} ${String(limit)} character${limit === 1 ? "" : "s"}`;
  return `${kind} ${String(limit)}`;
}

function measured(input: unknown, origin: string): string {
  if (origin === "array" && Array.isArray(input)) return `${input.length} item${input.length === 1 ? "" : "s"}`;
  if (origin === "string" && typeof input === "string") return `${input.length} character${input.length === 1 ? "" : "s"}`;
  return found(input);
}

export const errorMap: z.core.$ZodErrorMap = (issue) => {
  switch (issue.code) {
    case "invalid_type":
      if (issue.input === undefined) return `missing required field (expected ${typeName(issue.expected)})`;
      return `wrong type (found ${found(issue.input)}; expected ${typeName(issue.expected)})`;
    case "too_small":
      return `too ${issue.origin === "array" ? "few items" : issue.origin === "string" ? "short" : "small"} (found ${measured(issue.input, issue.origin)}; expected ${bound(issue.inclusive === false ? ">" : "≥", issue.minimum, issue.origin)})`;
    case "too_big":
      return `too ${issue.origin === "array" ? "many items" : issue.origin === "string" ? "long" : "large"} (found ${measured(issue.input, issue.origin)}; expected ${bound(issue.inclusive === false ? "<" : "≤", issue.maximum, issue.origin)})`;
    case "invalid_value":
      return `not an allowed value (found ${found(issue.input)}; expected ${oneOf(issue.values)})`;
    case "invalid_union": {
      if ("discriminator" in issue && typeof issue.discriminator === "string") {
        const input = issue.input as Record<string, unknown> | undefined;
        const options = "options" in issue && Array.isArray(issue.options) ? issue.options : [];
        const value = input !== null && typeof input === "object" ? input[issue.discriminator] : undefined;
        return value === undefined
          ? `missing required field (expected ${oneOf(options)})`
          : `not an allowed value (found ${found(value)}; expected ${oneOf(options)})`;
      }
      const expected = new Set<string>();
      for (const branch of issue.errors) for (const i of branch) if (i.code === "invalid_type") expected.add(typeName(i.expected));
      return `wrong type (found ${found(issue.input)}; expected ${expected.size > 0 ? [...expected].join(" or ") : "another value"})`;
    }
    default:
      return undefined;
  }
};

/** One reportable problem, located later by the YAML path. */
export interface Located {
  path: PropertyKey[];
  /** Point at the key (unknown fields, bad record keys) rather than the value. */
  at: "value" | "key";
  message: string;
}

/** Fields that must never hold a secret inline; the loader reports them with their own message. */
export const INLINE_SECRET_FIELDS: Record<string, string> = {
  password: "passwords are not allowed in the config file; use passwordFile or passwordEnv",
  privateKey: "private keys are not allowed in the config file; use privateKeyFile",
};

/**
 * Flattens zod issues into one entry per problem (an unknown-fields issue becomes one per field),
 * lazily: a file with a million unknown keys is one issue, and only the problems shown are kept.
 * `secretsScanned`: the inline-secret scan has reported this file's password and privateKey fields already.
 */
export function* flattenIssues(issues: readonly z.core.$ZodIssue[], secretsScanned = false): Generator<Located> {
  for (const issue of issues) {
    const path = issue.path as PropertyKey[];
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) {
        if (secretsScanned && Object.hasOwn(INLINE_SECRET_FIELDS, key)) continue;
        yield { path: [...path, key], at: "key", message: `unknown field ${quoteKey(key)} (expected one of: ${issue.message})` };
      }
    } else if (issue.code === "invalid_key") {
      const inner = issue.issues.map((i) => i.message).join("; ");
      yield { path, at: "key", message: inner };
    } else if (issue.code === "invalid_union" && !("discriminator" in issue) && issue.errors.some((branch) => branch.length > 0 && branch.every((i) => i.code !== "invalid_type"))) {
      // A union branch that matched the type but failed a check: its issues are the useful ones.
      const branch = issue.errors.find((b) => b.length > 0 && b.every((i) => i.code !== "invalid_type"))!;
      yield* flattenIssues(branch.map((i) => ({ ...i, path: [...path, ...i.path] })), secretsScanned);
    } else {
      yield { path, at: "value", message: issue.message };
    }
  }
}
