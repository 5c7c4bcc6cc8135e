import { readFileSync } from "node:fs";
import type { CheckReport } from "../update/checker.ts";
import { appVersion } from "../update/version.ts";
import type { ActionArgs } from "../commands/actions.ts";
import { AuditLog, auditFile } from "../commands/audit.ts";
import { CommandChannel, type ChannelHealth, type CommandItem } from "../commands/channel.ts";
import { EnvelopeVerifier, loadCommandKeys, type Command } from "../commands/envelope.ts";
import { CommandGate, type CommandResult } from "../commands/gate.ts";
import { setMapping } from "../commands/mapping-set.ts";
import { browseNodes, callMethod, failure, readNodes, writeNode } from "../commands/opcua-actions.ts";
import { CommandPolicy, type TypedValue } from "../commands/policy.ts";
import { checkPolicyOnServer, locateFindings } from "../commands/policy-check.ts";
import { ReplayStore, replayFile } from "../commands/replay.ts";
import type { LoadedConfig } from "../config/load.ts";
import { recentLogLines, type Logger } from "../log.ts";
import type { MachineSession } from "../opcua/session/session.ts";
import type { MachinesPart } from "./machines-part.ts";
import { within, type Part, type PartHealth, type Problem, type StopBudget } from "./part.ts";
import type { UplinkPart } from "./uplink-part.ts";

export interface CommandsPartOptions {
  loaded: LoadedConfig;
  stateDir: string;
  logger: Logger;
  uplink: UplinkPart;
  machines: MachinesPart;
  /** The agent's health report, for the `status` and `diagnostics` actions. */
  status: () => unknown;
  /** Stops the process for a remote `restart` (its supervisor or launcher starts it again). */
  requestStop?: ((reason: string) => void) | undefined;
  /** One check of the signed update channel now (the update part's); absent when self-update is off. */
  checkUpdate?: (() => Promise<CheckReport>) | undefined;
}

export interface CommandsHealth {
  polling: ChannelHealth;
  accepted: number;
  refused: number;
  lastCommand: { jti: string; action: string; state: string; at: string } | null;
  lastRefusal: { jti: string | null; code: string; at: string } | null;
}

export interface CommandsPartHealth extends PartHealth {
  commands: CommandsHealth | null;
}

/** How long a poll's answer may take beyond the wait before the channel counts as stuck. */
const WAIT_SECONDS = 25;
const RESULT_ATTEMPTS = 3;
/** The cloud times a command out anyway; results kept beyond this many are only in the audit log. */
const MAX_UNSENT = 1000;

/**
 * Remote commands (issue 16): pulls signed envelopes over the uplink (CommandChannel), lets each
 * through the gate (signature, audience, expiry, replay, scope, the owner's local policy, audit),
 * runs it through the part that owns what it touches (the machine's OPC UA session, the mapping
 * reload, the certificate renewal), posts the result and sends the audit rows upstream. Off
 * without a `commands` section: then it does not even poll.
 */
export class CommandsPart implements Part<CommandsPartHealth> {
  readonly name = "commands";
  readonly #o: CommandsPartOptions;
  readonly #log: Logger;
  #channel: CommandChannel | null = null;
  #gate: CommandGate | null = null;
  #audit: AuditLog | null = null;
  #replay: ReplayStore | null = null;
  #policy: CommandPolicy | null = null;
  #loaded: LoadedConfig;
  #busy: Promise<void> = Promise.resolve();
  #restart: string | null = null;
  readonly #counts = { accepted: 0, refused: 0 };
  #lastCommand: CommandsHealth["lastCommand"] = null;
  #lastRefusal: CommandsHealth["lastRefusal"] = null;
  /** Per machine: what of the local policy does not resolve on it ("FILE:LINE:COL: …"). */
  readonly #findings = new Map<string, string[]>();
  /** Final results the cloud has not taken yet, oldest first (bounded: the oldest go first). */
  readonly #unsent = new Map<string, CommandResult>();
  #startedAt = Date.now();

  constructor(options: CommandsPartOptions) {
    this.#o = options;
    this.#loaded = options.loaded;
    this.#log = options.logger.child({ component: "commands" });
  }

  async start(): Promise<void> {
    const { config } = this.#loaded;
    const c = config.commands;
    if (!c) {
      this.#log.info("remote commands: off (no commands section in the config)");
      return;
    }
    const transport = this.#o.uplink.transport;
    if (!transport) throw new Error("the uplink has no transport: start it before the commands part");
    const keys = await loadCommandKeys(c.keys);
    this.#replay = ReplayStore.open(replayFile(this.#o.stateDir), { clockSkewSeconds: c.clockSkewSeconds });
    this.#audit = AuditLog.open(auditFile(this.#o.stateDir));
    this.#policy = CommandPolicy.fromConfig(c, config.machines.map((m) => m.id));
    const verifier = new EnvelopeVerifier({ keys, instance: config.instance, clockSkewSeconds: c.clockSkewSeconds, maxLifetimeSeconds: c.maxLifetimeSeconds });
    this.#gate = new CommandGate({ verifier, replay: this.#replay, audit: this.#audit, policy: () => this.#policy! });
    this.#channel = new CommandChannel({
      url: config.cloud.url,
      transport,
      tokens: this.#o.uplink.tokens ?? undefined,
      waitSeconds: WAIT_SECONDS,
      retry: config.cloud.retry,
      logger: this.#log,
      handle: (item) => (this.#busy = this.#handle(item)),
      afterPoll: () => this.#flush(),
    });
    this.#startedAt = Date.now();
    // the policy against each machine, after each connect: a node or method that does not fit shows now
    for (const session of this.#o.machines.sessions) {
      session.on("subscribed", () => void this.#checkPolicy(session));
      if (session.state === "connected") void this.#checkPolicy(session);
    }
    this.#channel.start();
    this.#log.info({ actions: [...this.#policy.actions] }, "remote commands: polling the cloud");
  }

  async stop(budget: StopBudget): Promise<void> {
    if (!this.#channel) return;
    // a command under way finishes (and posts its result) within the budget
    await within(this.#channel.stop(), budget.left(3_000));
    await within(this.#busy, budget.left(3_000));
    this.#replay?.close();
    this.#audit?.close();
  }

  health(now: number): CommandsPartHealth {
    if (!this.#channel) return { problems: [], commands: null };
    const polling = this.#channel.health();
    const problems: Problem[] = [];
    const since = polling.lastPollAt ?? this.#startedAt;
    const limitMs = 2 * (WAIT_SECONDS + 15) * 1000;
    if (polling.consecutiveFailures > 0 && now - since > limitMs) {
      problems.push({ part: this.name, reason: `no command poll answered for ${Math.round((now - since) / 1000)} s: ${polling.lastError ?? "?"}`, ...(polling.lastErrorCode ? { code: polling.lastErrorCode } : {}) });
    }
    const warnings = [...this.#findings].flatMap(([machine, lines]) => lines.map((reason) => ({ part: `${this.name} ${machine}`, reason, code: "COMMAND_POLICY" })));
    return { problems, warnings, commands: { polling, ...this.#counts, lastCommand: this.#lastCommand, lastRefusal: this.#lastRefusal } };
  }

  /** The audit log, for tests and `kerf audit` in process. */
  get audit(): AuditLog | null {
    return this.#audit;
  }

  async #handle(item: CommandItem): Promise<void> {
    const gate = this.#gate!;
    let admission: Awaited<ReturnType<CommandGate["admit"]>>;
    try {
      admission = await gate.admit(item.envelope);
    } catch (err) {
      // fails closed: a command that cannot be audited does not run, and the cloud is told so
      this.#log.error({ jti: item.jti, err: (err as Error).message }, "remote command not run: the gate failed");
      return this.#post(item.jti, { state: "failed", code: (err as { code?: string }).code ?? "GATE_FAILED", reason: `not run: ${(err as Error).message}` });
    }
    const at = new Date().toISOString();
    if (!admission.ok) {
      this.#counts.refused++;
      this.#lastRefusal = { jti: admission.jti ?? null, code: admission.code, at };
      this.#log.warn({ jti: admission.jti ?? item.jti, code: admission.code }, `remote command refused: ${admission.reason}`);
      // the cloud learns why, under the id it gave (a forged envelope's claimed jti is not trusted)
      await this.#post(item.jti, { state: "refused", code: admission.code, reason: admission.reason });
      await this.#sendAudit();
      return;
    }
    const command = admission.command;
    this.#counts.accepted++;
    this.#log.info({ jti: command.jti, action: command.action, app: command.clientId, user: command.sub }, "remote command accepted");
    await this.#post(command.jti, { state: "running" });
    let result: CommandResult;
    try {
      result = await this.#execute(command, admission.values);
    } catch (err) {
      result = failure(err);
    }
    gate.finish(command, result);
    this.#lastCommand = { jti: command.jti, action: command.action, state: result.state, at: new Date().toISOString() };
    await this.#post(command.jti, result);
    await this.#sendAudit();
    if (this.#restart) this.#o.requestStop?.(this.#restart);
  }

  async #execute(c: Command, values: TypedValue[]): Promise<CommandResult> {
    switch (c.action) {
      case "status":
        return { state: "succeeded", data: this.#o.status() };
      case "read": {
        const args = c.args as ActionArgs["read"];
        return this.#onSession(args.machine, (s, ns) => readNodes(s, ns, args));
      }
      case "browse": {
        const args = c.args as ActionArgs["browse"];
        return this.#onSession(args.machine, (s, ns) => browseNodes(s, ns, args));
      }
      case "write": {
        const args = c.args as ActionArgs["write"];
        return this.#onSession(args.machine, (s, ns) => writeNode(s, ns, args, values[0]!));
      }
      case "call": {
        const args = c.args as ActionArgs["call"];
        return this.#onSession(args.machine, (s, ns) => callMethod(s, ns, args, values));
      }
      case "mapping.get":
        return { state: "succeeded", data: { mapping: readFileSync(this.#loaded.mappingFile, "utf8") } };
      case "mapping.set":
        return this.#setMapping(c);
      case "update.check": {
        if (!this.#o.checkUpdate) return { state: "bad_request", code: "not_available", reason: "self-update is off on this connector (its config has no update section)" };
        const r = await this.#o.checkUpdate();
        const data = { outcome: r.outcome, ...(r.version ? { version: r.version } : {}), ...(r.reason ? { reason: r.reason } : {}), via: r.via };
        if (r.outcome === "failed" || r.outcome === "refused") return { state: "failed", code: `update_${r.outcome}`, reason: r.reason ?? r.outcome, data };
        return { state: "succeeded", data };
      }
      case "identity.renew": {
        const renewal = this.#o.uplink.renewal;
        if (!renewal) return { state: "bad_request", code: "not_available", reason: "this connector has no cloud.enrolment: its certificate is not renewed over EST" };
        const identity = await renewal.renewNow();
        return { state: "succeeded", data: { notAfter: identity.notAfter.toISOString() } };
      }
      case "diagnostics":
        return { state: "succeeded", data: this.#diagnostics((c.args as ActionArgs["diagnostics"]).logLines ?? 200) };
      case "restart":
        this.#restart = `remote restart (command ${c.jti} from ${c.clientId})`;
        return { state: "succeeded", reason: "restarting after this result" };
    }
  }

  async #checkPolicy(session: MachineSession): Promise<void> {
    try {
      const findings = await session.operate((s, ns) => checkPolicyOnServer(s, ns, this.#loaded, session.machine));
      if (findings === null) return;
      const lines = locateFindings(this.#loaded, findings);
      this.#findings.set(session.machine, lines);
      for (const line of lines) this.#log.warn({ machine: session.machine }, `remote command policy: ${line}`);
    } catch (err) {
      this.#log.warn({ machine: session.machine, err: (err as Error).message }, "could not check the remote command policy against the server");
    }
  }

  /** On the machine's own session (its one owner); "busy" while it is not connected. */
  async #onSession(machine: string, fn: Parameters<MachineSession["operate"]>[0]): Promise<CommandResult> {
    const session = this.#o.machines.sessions.find((s) => s.machine === machine);
    if (!session) return { state: "bad_request", code: "unknown_machine", reason: `no machine '${machine}'` };
    try {
      const result = (await session.operate(fn)) as CommandResult | null;
      return result ?? { state: "busy", code: "not_connected", reason: `machine ${machine} is ${session.state}, not connected` };
    } catch (err) {
      return failure(err);
    }
  }

  /** Checked by the real loader; only a mapping that passes is written and applied as a diff. */
  async #setMapping(c: Command): Promise<CommandResult> {
    const { mapping } = c.args as ActionArgs["mapping.set"];
    const checked = await setMapping(this.#loaded, mapping, `mapping from command ${c.jti}`);
    if (!checked.ok) return { state: "bad_request", code: "mapping_invalid", reason: checked.errors.join("\n"), data: { errors: checked.errors } };
    this.#loaded = checked.loaded;
    const applied = await this.#o.machines.reloadMapping();
    for (const session of this.#o.machines.sessions) void this.#checkPolicy(session);
    return applied ? { state: "succeeded" } : { state: "failed", code: "mapping_not_applied", reason: "the mapping was written but the reload refused it; the last good mapping keeps running" };
  }

  #diagnostics(logLines: number) {
    const { config } = this.#loaded;
    return {
      versions: { kerf: appVersion(), node: process.version, platform: `${process.platform} ${process.arch}` },
      // the config holds paths to secrets, never their content (loaded.secrets is left out)
      config,
      health: this.#o.status(),
      commands: { ...this.#counts, lastCommand: this.#lastCommand, lastRefusal: this.#lastRefusal },
      memory: process.memoryUsage(),
      uptimeSeconds: Math.round(process.uptime()),
      logs: recentLogLines(logLines),
    };
  }

  /** Posts a result, a few times; a final one that does not arrive waits for the next answered poll (in memory). */
  async #post(jti: string, result: CommandResult | { state: "running" }): Promise<void> {
    if (!jti) return; // an item the cloud sent without a usable id: refused and audited, nowhere to post
    for (let attempt = 1; attempt <= RESULT_ATTEMPTS; attempt++) {
      try {
        return await this.#channel!.postResult(jti, result);
      } catch (err) {
        this.#log.warn({ jti, attempt, err: (err as Error).message }, "could not post a command result");
        if (attempt < RESULT_ATTEMPTS) await new Promise((r) => setTimeout(r, 500 * attempt));
      }
    }
    if (result.state === "running") return;
    this.#unsent.set(jti, result);
    if (this.#unsent.size > MAX_UNSENT) this.#unsent.delete(this.#unsent.keys().next().value!);
  }

  /** After each answered poll: results the cloud did not take yet, then audit rows. */
  async #flush(): Promise<void> {
    for (const [jti, result] of this.#unsent) {
      try {
        await this.#channel!.postResult(jti, result);
        this.#unsent.delete(jti);
      } catch (err) {
        this.#log.warn({ jti, err: (err as Error).message }, "could not post a command result; trying again after the next poll");
        break;
      }
    }
    await this.#sendAudit();
  }

  /** The rows the cloud does not have yet; a failure leaves them for the next command. */
  async #sendAudit(): Promise<void> {
    const audit = this.#audit!;
    const rows = audit.rows(audit.sentSeq(), 1000);
    if (rows.length === 0) return;
    try {
      await this.#channel!.postAudit(rows);
      audit.markSent(rows.at(-1)!.seq);
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, "could not send audit rows upstream; they are sent with the next command");
    }
  }
}
