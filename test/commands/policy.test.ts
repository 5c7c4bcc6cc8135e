import { generateKeyPairSync } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Action, ActionArgs } from "../../src/commands/actions.ts";
import type { Command } from "../../src/commands/envelope.ts";
import { CommandPolicy, type PolicyDecision } from "../../src/commands/policy.ts";
import { CLOUD, GOOD_CONFIG, load, loadError, tempDir, type TempDir } from "../config/helpers.ts";

let t: TempDir;
beforeEach(async () => {
  t = await tempDir();
  const key = { ...generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ format: "jwk" }), kid: "cmd-1" };
  await t.write("command-keys.json", JSON.stringify({ keys: [key] }));
});
afterEach(() => t.cleanup());

/** GOOD_CONFIG plus a commands section (its first line is line 9). */
const withCommands = (section: string) => `${GOOD_CONFIG}commands:\n  keys: ./command-keys.json\n${section}`;

async function policyOf(section: string): Promise<CommandPolicy> {
  const loaded = await load(t, withCommands(section));
  expect(loaded.config.commands?.keys).toBe(`${t.dir}/command-keys.json`);
  return CommandPolicy.fromConfig(loaded.config.commands, loaded.config.machines.map((m) => m.id));
}

function command<A extends Action>(action: A, args: ActionArgs[A]): Command {
  return { jti: "c", clientId: "app", scope: "machines:read machines:write connector:manage", action, args, iat: 0, exp: 60 } as Command;
}

const refusal = (d: PolicyDecision) => (d.ok ? "ok" : d.code);

const SETPOINT = `  actions: [status, read, write, call]
  machines:
    saw-1:
      write:
        - { node: "ns=2;s=Setpoint", type: Double, min: 0, max: 5000 }
        - { node: "ns=2;s=Count", type: UInt16 }
        - { node: "ns=2;s=Big", type: Int64 }
        - { node: "ns=2;s=Enabled", type: Boolean }
        - { node: "ns=2;s=Start", type: DateTime }
        - { node: "i=6000", type: Boolean }
      call:
        - { object: "ns=2;s=Saw", method: "ns=2;s=Saw.Reset", inputs: [String, Int32] }
`;

describe("the local policy", () => {
  it("allows only reading by default: write, call, mapping.set and restart are refused", async () => {
    const p = await policyOf("");
    expect([...p.actions]).toEqual(["status", "read", "browse", "mapping.get"]);
    expect(refusal(p.check(command("read", { machine: "saw-1", nodes: ["i=2258"] })))).toBe("ok");
    expect(refusal(p.check(command("write", { machine: "saw-1", node: "ns=2;s=X", value: 1 })))).toBe("action_not_allowed");
    expect(refusal(p.check(command("call", { machine: "saw-1", object: "i=85", method: "i=1", inputs: [] })))).toBe("action_not_allowed");
    expect(refusal(p.check(command("mapping.set", { mapping: "machines: {}" })))).toBe("action_not_allowed");
    expect(refusal(p.check(command("restart", {})))).toBe("action_not_allowed");
    // Without a commands section at all, nothing runs.
    expect(refusal(CommandPolicy.fromConfig(undefined, ["saw-1"]).check(command("status", {})))).toBe("action_not_allowed");
  });

  it("with write allowed, writes only listed nodes (in any spelling of the same id), and not on unknown machines", async () => {
    const p = await policyOf(SETPOINT);
    expect(p.check(command("write", { machine: "saw-1", node: "ns=2;s=Setpoint", value: 12.5 }))).toEqual({ ok: true, values: [{ type: "Double", value: 12.5 }] });
    expect(refusal(p.check(command("write", { machine: "saw-1", node: "ns=0;i=6000", value: true })))).toBe("ok");
    expect(refusal(p.check(command("write", { machine: "saw-1", node: "ns=2;s=Other", value: 1 })))).toBe("node_not_writable");
    expect(refusal(p.check(command("write", { machine: "saw-1", node: "ns=3;s=Setpoint", value: 1 })))).toBe("node_not_writable");
    expect(refusal(p.check(command("write", { machine: "saw-1", node: "not a node", value: 1 })))).toBe("node_not_writable");
    expect(refusal(p.check(command("write", { machine: "saw-2", node: "ns=2;s=Setpoint", value: 1 })))).toBe("unknown_machine");
    expect(refusal(p.check(command("read", { machine: "saw-2", nodes: ["i=2258"] })))).toBe("unknown_machine");
  });

  it("checks a written value against the node's type and range", async () => {
    const p = await policyOf(SETPOINT);
    const write = (node: string, value: string | number | boolean) => p.check(command("write", { machine: "saw-1", node: `ns=2;s=${node}`, value }));
    expect(refusal(write("Setpoint", "12"))).toBe("type_mismatch");
    expect(refusal(write("Setpoint", 5000.5))).toBe("out_of_range");
    expect(refusal(write("Setpoint", -1))).toBe("out_of_range");
    expect(refusal(write("Count", 65_536))).toBe("type_mismatch");
    expect(refusal(write("Count", 1.5))).toBe("type_mismatch");
    expect(write("Count", 65_535)).toEqual({ ok: true, values: [{ type: "UInt16", value: 65_535 }] });
    expect(write("Big", "9223372036854775807")).toEqual({ ok: true, values: [{ type: "Int64", value: 9_223_372_036_854_775_807n }] });
    expect(refusal(write("Big", "9223372036854775808"))).toBe("type_mismatch");
    expect(refusal(write("Enabled", 1))).toBe("type_mismatch");
    expect(refusal(write("Start", "yesterday"))).toBe("type_mismatch");
    expect(write("Start", "2026-12-06T02:00:00Z")).toEqual({ ok: true, values: [{ type: "DateTime", value: new Date("2026-12-06T02:00:00Z") }] });
  });

  it("calls only listed methods, with exactly the configured input types", async () => {
    const p = await policyOf(SETPOINT);
    const call = (method: string, inputs: (string | number)[]) => p.check(command("call", { machine: "saw-1", object: "ns=2;s=Saw", method, inputs }));
    expect(call("ns=2;s=Saw.Reset", ["all", 3])).toEqual({ ok: true, values: [{ type: "String", value: "all" }, { type: "Int32", value: 3 }] });
    expect(refusal(call("ns=2;s=Saw.Stop", []))).toBe("method_not_callable");
    expect(refusal(call("ns=2;s=Saw.Reset", ["all"]))).toBe("type_mismatch");
    expect(refusal(call("ns=2;s=Saw.Reset", ["all", 3, "extra"]))).toBe("type_mismatch");
    expect(refusal(call("ns=2;s=Saw.Reset", [3, "all"]))).toBe("type_mismatch");
  });

  it("can be narrowed by the cloud, never widened", async () => {
    const p = await policyOf(SETPOINT);
    const narrowed = p.narrow(["write", "restart"]);
    expect([...narrowed.actions]).toEqual(["status", "read", "call"]);
    expect(refusal(narrowed.check(command("write", { machine: "saw-1", node: "ns=2;s=Setpoint", value: 1 })))).toBe("action_not_allowed");
    expect(refusal(p.check(command("write", { machine: "saw-1", node: "ns=2;s=Setpoint", value: 1 })))).toBe("ok");
  });
});

describe("the commands section of the config", () => {
  it("reports its mistakes with file:line: unknown machine, unknown action, type, duplicate node, min on a string, keys file", async () => {
    await t.write("private.json", JSON.stringify({ keys: [{ ...generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ format: "jwk" }), kid: "k" }] }));
    const err = await loadError(
      t,
      `${GOOD_CONFIG}commands:
  keys: ./private.json
  actions: [status, shell]
  machines:
    saw-9:
      write:
        - { node: "ns=2;s=A", type: Real }
        - { node: "ns=2;s=B", type: String, min: 1 }
        - { node: "ns=2;s=B", type: String }
`,
    );
    expect(err.code).toBe("CONFIG_INVALID");
    const lines = err.details.map((d) => d.replace(/^.*kerf\.yaml:/, ""));
    expect(lines).toEqual([
      expect.stringMatching(/^10:9: commands\.keys: unusable command-signing keys \(found "\.\/private\.json": keys\[0\] is a private key/),
      expect.stringMatching(/^11:21: commands\.actions\[1\]: not an allowed value \(found "shell"; expected one of status, read, /),
      expect.stringMatching(/^14:7: commands\.machines\.saw-9: not a machine of this config/),
      expect.stringMatching(/^15:37: commands\.machines\.saw-9\.write\[0\]\.type: not an allowed value \(found "Real"/),
      expect.stringMatching(/^16:50: commands\.machines\.saw-9\.write\[1\]\.min: min needs a numeric type/),
      expect.stringMatching(/^17:11: commands\.machines\.saw-9\.write\[2\]: duplicate node/),
    ]);
  });

  it("is optional: without it, no command is taken", async () => {
    const loaded = await load(t, `${GOOD_CONFIG}`);
    expect(loaded.config.commands).toBeUndefined();
    expect(CLOUD).toContain("pins");
  });
});
