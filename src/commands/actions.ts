/**
 * The remote actions a command envelope can carry, the OAuth scope that allows each, and the
 * shape of each action's arguments. The cloud checks scopes too; the connector checks them again
 * because it trusts only what the signed envelope says (issue 16).
 */
import { z } from "zod";

export const ACTIONS = [
  "status",
  "read",
  "browse",
  "mapping.get",
  "mapping.set",
  "write",
  "call",
  "update.check",
  "identity.renew",
  "diagnostics",
  "restart",
] as const;
export type Action = (typeof ACTIONS)[number];

export const SCOPES = ["machines:read", "machines:write", "connector:manage", "connector:update", "connector:diagnostics"] as const;
export type Scope = (typeof SCOPES)[number];

/** Which scope allows which actions. Each action is allowed by exactly one scope. */
export const SCOPE_ACTIONS: Readonly<Record<Scope, readonly Action[]>> = {
  "machines:read": ["status", "read", "browse", "mapping.get"],
  "machines:write": ["write", "call"],
  "connector:manage": ["mapping.set", "restart", "identity.renew"],
  "connector:update": ["update.check"],
  "connector:diagnostics": ["diagnostics"],
};

/** What the machine owner allows when the config does not say: reading only. */
export const READ_ONLY_ACTIONS: readonly Action[] = SCOPE_ACTIONS["machines:read"];

export function isAction(value: unknown): value is Action {
  return typeof value === "string" && (ACTIONS as readonly string[]).includes(value);
}

/** The scope that allows `action`. */
export function scopeOf(action: Action): Scope {
  for (const scope of SCOPES) if (SCOPE_ACTIONS[scope].includes(action)) return scope;
  throw new Error(`no scope allows action ${action}`);
}

/** True when one of the space-separated scopes in `scope` allows `action` (RFC 6749 §3.3 scope syntax). */
export function scopeAllows(scope: string, action: Action): boolean {
  return scope.split(" ").includes(scopeOf(action));
}

/** The OPC UA built-in scalar types that a write or a method input can carry (Part 6 §5.1.2). */
export const VALUE_TYPES = ["Boolean", "SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "Float", "Double", "String", "DateTime"] as const;
export type ValueType = (typeof VALUE_TYPES)[number];
export const NUMERIC_TYPES: ReadonlySet<ValueType> = new Set(["SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "Float", "Double"]);

const machine = z.string().min(1).max(128);
const nodeId = z.string().min(1).max(4200);
/** A value to write, as JSON carries it; its OPC UA type comes from the local policy. */
const writeValue = z.union([z.string().max(65_536), z.number(), z.boolean()]);
const none = z.strictObject({});

/** Arguments of each action. Strict: an unknown field is refused, not ignored. */
export const ACTION_ARGS = {
  status: none,
  read: z.strictObject({ machine, nodes: z.array(nodeId).min(1).max(1000) }),
  browse: z.strictObject({ machine, node: nodeId.optional(), depth: z.int().min(1).max(10).optional() }),
  "mapping.get": none,
  // The mapping file's text (YAML): it goes through the same loader and checks as the file.
  "mapping.set": z.strictObject({ mapping: z.string().min(1).max(16 * 1024 * 1024) }),
  write: z.strictObject({ machine, node: nodeId, value: writeValue }),
  call: z.strictObject({ machine, object: nodeId, method: nodeId, inputs: z.array(writeValue).max(64).default([]) }),
  "update.check": none,
  "identity.renew": none,
  diagnostics: z.strictObject({ logLines: z.int().min(0).max(100_000).optional() }),
  restart: none,
} satisfies Record<Action, z.ZodType>;

export type ActionArgs = { [A in Action]: z.infer<(typeof ACTION_ARGS)[A]> };
export type WriteValue = z.infer<typeof writeValue>;
