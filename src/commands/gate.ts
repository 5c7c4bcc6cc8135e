/**
 * The one way in for a command envelope: verify it (envelope.ts), take its id (replay.ts), check
 * it against the owner's policy (policy.ts), and audit the decision (audit.ts), in this order.
 * The id is taken only after the signature holds, so that unsigned junk cannot fill the store;
 * it is taken before the policy, so that a refused command cannot be replayed either.
 *
 * Fails closed: if the audit log cannot be written, the command does not run (the error
 * propagates). The commands part executes what `admit` lets through and reports with `finish`.
 */
import type { AuditLog } from "./audit.ts";
import type { Command, EnvelopeVerifier, RefusalCode } from "./envelope.ts";
import type { CommandPolicy, PolicyRefusalCode, TypedValue } from "./policy.ts";
import type { ReplayStore } from "./replay.ts";

export type GateRefusalCode = RefusalCode | PolicyRefusalCode | "replayed";

export type Admission =
  | { ok: true; command: Command; values: TypedValue[] }
  | { ok: false; code: GateRefusalCode; reason: string; jti?: string };

/**
 * What the connector posts for a command (POST /v1/commands/<jti>/result), after tapio's typed
 * results: refused (by this connector, with its code), bad_request (the machine refused the
 * arguments), busy (the machine or session cannot take it now), failed (any other error), succeeded.
 */
export interface CommandResult {
  state: "succeeded" | "refused" | "bad_request" | "busy" | "failed";
  /** A stable code: a GateRefusalCode, an OPC UA status name such as BadTypeMismatch, or the like. */
  code?: string;
  reason?: string;
  /** The action's answer (read values, browse tree, mapping text); never for a refusal. */
  data?: unknown;
}

export interface CommandGateOptions {
  verifier: EnvelopeVerifier;
  replay: ReplayStore;
  /** The policy in force now: a config reload or a remote narrowing replaces it. */
  policy: () => CommandPolicy;
  audit: AuditLog;
}

export class CommandGate {
  readonly #o: CommandGateOptions;

  constructor(options: CommandGateOptions) {
    this.#o = options;
  }

  async admit(envelope: string): Promise<Admission> {
    const verified = await this.#o.verifier.verify(envelope);
    if (!verified.ok) {
      const { code, reason, claimed } = verified.refusal;
      this.#o.audit.append({ jti: claimed.jti, app: claimed.clientId, user: claimed.sub, action: claimed.action, outcome: "refused", reason: `${code}: ${reason}` });
      return { ok: false, code, reason, ...(claimed.jti === undefined ? {} : { jti: claimed.jti }) };
    }
    const c = verified.command;
    const who = { jti: c.jti, app: c.clientId, user: c.sub, action: c.action, args: c.args };
    if (!this.#o.replay.claim(c.jti, c.exp)) {
      const reason = `command ${c.jti} was taken before`;
      this.#o.audit.append({ ...who, outcome: "refused", reason: `replayed: ${reason}` });
      return { ok: false, code: "replayed", reason, jti: c.jti };
    }
    const decision = this.#o.policy().check(c);
    if (!decision.ok) {
      this.#o.audit.append({ ...who, outcome: "refused", reason: `${decision.code}: ${decision.reason}` });
      return { ok: false, code: decision.code, reason: decision.reason, jti: c.jti };
    }
    this.#o.audit.append({ ...who, outcome: "accepted" });
    return { ok: true, command: c, values: decision.values };
  }

  /** Audits the result of a command that `admit` let through. */
  finish(command: Command, result: CommandResult): void {
    const text = `${result.state}${result.code === undefined ? "" : ` ${result.code}`}${result.reason === undefined ? "" : `: ${result.reason}`}`;
    this.#o.audit.append({ jti: command.jti, app: command.clientId, user: command.sub, action: command.action, outcome: "result", result: text });
  }
}
