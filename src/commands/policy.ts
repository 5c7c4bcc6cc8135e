/**
 * The machine owner's local policy (config `commands`): which actions this connector runs, which
 * nodes remote writes may change and which methods remote calls may run, per machine. It has the
 * last word over any scope or grant in the cloud. Writes and calls are off unless listed.
 *
 * The cloud can only narrow it (`narrow`), never widen it; nothing a command carries changes it.
 * Whether the listed nodes and methods exist on the server, with the stated types, is checked
 * against the server when the machines part connects (see STATUS-cmd.md): that needs a session.
 */
import type { CommandsConfig } from "../config/schema.ts";
import { nodeIdKey } from "../config/nodeid.ts";
import type { Action, ValueType, WriteValue } from "./actions.ts";
import type { Command } from "./envelope.ts";

export type PolicyRefusalCode =
  /** The owner does not allow this action (commands.actions). */
  | "action_not_allowed"
  | "unknown_machine"
  /** Not in the machine's commands.machines.<id>.write list. */
  | "node_not_writable"
  /** Not in the machine's commands.machines.<id>.call list. */
  | "method_not_callable"
  /** A value, or the number of method inputs, that does not fit the configured type. */
  | "type_mismatch"
  /** A number outside the configured min..max. */
  | "out_of_range";

/** A value checked against its configured type: Int64 and UInt64 as bigint, DateTime as Date. */
export interface TypedValue {
  type: ValueType;
  value: boolean | number | bigint | string | Date;
}

export type PolicyDecision = { ok: true; values: TypedValue[] } | { ok: false; code: PolicyRefusalCode; reason: string };

interface WriteRule {
  node: string;
  type: ValueType;
  min?: number;
  max?: number;
}

interface CallRule {
  object: string;
  method: string;
  inputs: ValueType[];
}

interface MachineRules {
  write: Map<string, WriteRule>;
  call: Map<string, CallRule>;
}

const INTEGER_RANGES: Partial<Record<ValueType, [bigint, bigint]>> = {
  SByte: [-128n, 127n],
  Byte: [0n, 255n],
  Int16: [-32_768n, 32_767n],
  UInt16: [0n, 65_535n],
  Int32: [-2_147_483_648n, 2_147_483_647n],
  UInt32: [0n, 4_294_967_295n],
  Int64: [-(2n ** 63n), 2n ** 63n - 1n],
  UInt64: [0n, 2n ** 64n - 1n],
};
const FLOAT_MAX = 3.4028234663852886e38;
const ISO_DATETIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

export class CommandPolicy {
  readonly actions: ReadonlySet<Action>;
  readonly #machines: ReadonlyMap<string, MachineRules>;
  readonly #known: ReadonlySet<string>;

  private constructor(actions: ReadonlySet<Action>, machines: ReadonlyMap<string, MachineRules>, known: ReadonlySet<string>) {
    this.actions = actions;
    this.#machines = machines;
    this.#known = known;
  }

  /** From the validated config; without a `commands` section nothing is allowed. */
  static fromConfig(commands: CommandsConfig | undefined, machineIds: readonly string[]): CommandPolicy {
    const machines = new Map<string, MachineRules>();
    for (const [id, m] of Object.entries(commands?.machines ?? {})) {
      machines.set(id, {
        write: new Map(m.write.map((w) => [nodeIdKey(w.node), w])),
        call: new Map(m.call.map((c) => [callKey(c.object, c.method), c])),
      });
    }
    return new CommandPolicy(new Set(commands?.actions ?? []), machines, new Set(machineIds));
  }

  /** The same policy with fewer actions: what a remote command may do to it, and all it may do. */
  narrow(disallow: Iterable<Action>): CommandPolicy {
    const remove = new Set(disallow);
    return new CommandPolicy(new Set([...this.actions].filter((a) => !remove.has(a))), this.#machines, this.#known);
  }

  /** The writable nodes and callable methods per machine, for the check against the server at start. */
  listed(): { machine: string; write: WriteRule[]; call: CallRule[] }[] {
    return [...this.#machines].map(([machine, r]) => ({ machine, write: [...r.write.values()], call: [...r.call.values()] }));
  }

  /** Whether a verified command may run here; for write and call, its values with their types. */
  check(command: Command): PolicyDecision {
    const refuse = (code: PolicyRefusalCode, reason: string): PolicyDecision => ({ ok: false, code, reason });
    const { action } = command;
    if (!this.actions.has(action)) return refuse("action_not_allowed", `the machine owner does not allow ${action} here (commands.actions: ${[...this.actions].join(", ") || "none"})`);
    const args = command.args as { machine?: string };
    if (args.machine !== undefined && !this.#known.has(args.machine)) return refuse("unknown_machine", `no machine ${JSON.stringify(args.machine)} in this connector's config`);

    if (action === "write") {
      const { machine, node, value } = command.args as Command<"write">["args"];
      const rule = this.#rules(machine)?.write.get(safeKey(node));
      if (!rule) return refuse("node_not_writable", `node ${node} of machine ${machine} is not writable (not in commands.machines.${machine}.write)`);
      const typed = typedValue(rule.type, value);
      if (typeof typed === "string") return refuse("type_mismatch", `node ${node}: ${typed}`);
      const n = typed.value;
      if ((rule.min !== undefined && (n as number) < rule.min) || (rule.max !== undefined && (n as number) > rule.max)) {
        return refuse("out_of_range", `node ${node}: ${String(value)} is outside ${rule.min ?? "−∞"}..${rule.max ?? "∞"}`);
      }
      return { ok: true, values: [typed] };
    }
    if (action === "call") {
      const { machine, object, method, inputs } = command.args as Command<"call">["args"];
      const rule = this.#rules(machine)?.call.get(safeCallKey(object, method));
      if (!rule) return refuse("method_not_callable", `method ${method} on ${object} of machine ${machine} may not be called (not in commands.machines.${machine}.call)`);
      if (inputs.length !== rule.inputs.length) return refuse("type_mismatch", `method ${method} takes ${rule.inputs.length} input${rule.inputs.length === 1 ? "" : "s"} (found ${inputs.length})`);
      const values: TypedValue[] = [];
      for (const [i, type] of rule.inputs.entries()) {
        const typed = typedValue(type, inputs[i]!);
        if (typeof typed === "string") return refuse("type_mismatch", `method ${method} input ${i}: ${typed}`);
        values.push(typed);
      }
      return { ok: true, values };
    }
    return { ok: true, values: [] };
  }

  #rules(machine: string): MachineRules | undefined {
    return this.#machines.get(machine);
  }
}

function callKey(object: string, method: string): string {
  return `${nodeIdKey(object)} ${nodeIdKey(method)}`;
}

/** A node id from a command that does not parse matches nothing. */
function safeKey(node: string): string {
  try {
    return nodeIdKey(node);
  } catch {
    return "";
  }
}

function safeCallKey(object: string, method: string): string {
  try {
    return callKey(object, method);
  } catch {
    return "";
  }
}

/** The value as `type`, or what is wrong with it. */
export function typedValue(type: ValueType, value: WriteValue): TypedValue | string {
  const wrong = (expected: string) => `${JSON.stringify(value)} is not ${expected} (the node's type is ${type})`;
  switch (type) {
    case "Boolean":
      return typeof value === "boolean" ? { type, value } : wrong("true or false");
    case "String":
      return typeof value === "string" ? { type, value } : wrong("a string");
    case "DateTime":
      return typeof value === "string" && ISO_DATETIME.test(value) && !Number.isNaN(Date.parse(value)) ? { type, value: new Date(value) } : wrong("an ISO 8601 time with a zone");
    case "Double":
      return typeof value === "number" && Number.isFinite(value) ? { type, value } : wrong("a number");
    case "Float":
      return typeof value === "number" && Number.isFinite(value) && Math.abs(value) <= FLOAT_MAX ? { type, value } : wrong("a number within Float's range");
    default: {
      const [lo, hi] = INTEGER_RANGES[type]!;
      // 64-bit integers may come as decimal strings: a JSON number loses precision above 2^53.
      const big = typeof value === "number" && Number.isSafeInteger(value) ? BigInt(value) : typeof value === "string" && /^-?\d{1,20}$/.test(value) && (type === "Int64" || type === "UInt64") ? BigInt(value) : undefined;
      if (big === undefined || big < lo || big > hi) return wrong(`a whole number in ${lo}..${hi}`);
      return { type, value: type === "Int64" || type === "UInt64" ? big : Number(big) };
    }
  }
}
