/**
 * The devcloud's command hub (issue 16; docs/protocol.md "Remote commands"): commands the partner
 * API accepted, queued per connector as signed envelopes, handed out by long poll
 * (GET /v1/commands?wait=N), their state as the connector reports it
 * (POST /v1/commands/<jti>/result), and the audit rows the connectors send (POST /v1/audit),
 * whose hash chain it checks. In memory: a devcloud restart forgets queued commands (the
 * connector is not affected; the partner sees 404 for them).
 */
import type { ServerResponse } from "node:http";
import { z } from "zod";
import type { Action } from "../commands/actions.ts";
import { GENESIS, rowHash, type AuditRow } from "../commands/audit.ts";
import type { CommandResult } from "../commands/gate.ts";
import type { Logger } from "../log.ts";

export type CommandState = "queued" | "delivered" | "running" | "succeeded" | "bad_request" | "busy" | "failed" | "refused" | "timed_out";
const FINAL: ReadonlySet<CommandState> = new Set(["succeeded", "bad_request", "busy", "failed", "refused", "timed_out"]);

export interface CommandRecord {
  jti: string;
  connector: string;
  clientId: string;
  sub?: string;
  action: Action;
  envelope: string;
  state: CommandState;
  result?: CommandResult;
  createdAt: string;
  /** ISO: a command not running by then is timed out, never run late. */
  deadline: string;
  /** Envelope expiry, seconds since the epoch. */
  exp: number;
  /**
   * Which of the connector's polls (ConnectorSeen.polls) carried it. */
  deliveredOnPoll?: number;
  /** Offered a second time: the answer that carried it first seems lost. */
  redelivered?: boolean;
}

/** Longest hold of a poll, whatever the connector asks: under the idle cut of common proxies. */
const MAX_WAIT_SECONDS = 25;
const MAX_PER_POLL = 16;

const resultBody = z.object({
  state: z.enum(["running", "succeeded", "refused", "bad_request", "busy", "failed"]),
  code: z.string().max(256).optional(),
  reason: z.string().max(4096).optional(),
  data: z.unknown().optional(),
});

const auditRow = z.object({
  seq: z.int().min(1),
  at: z.string(),
  jti: z.string().nullable(),
  app: z.string().nullable(),
  user: z.string().nullable(),
  action: z.string().nullable(),
  argsSha256: z.string().nullable(),
  outcome: z.enum(["accepted", "refused", "result"]),
  reason: z.string().nullable(),
  result: z.string().nullable(),
  prev: z.string(),
  hash: z.string(),
});

export interface ConnectorSeen {
  lastPollAt: number | null;
  /** Polls received since this devcloud started. */
  polls: number;
}

export class CommandHub {
  /** A test's fault: the next poll answer that carries commands is lost (the connection closes after they were marked delivered). */
  loseNextAnswer = false;
  readonly #log: Logger;
  readonly #records = new Map<string, CommandRecord>();
  readonly #queues = new Map<string, string[]>();
  readonly #waiters = new Map<string, Set<() => void>>();
  readonly #seen = new Map<string, ConnectorSeen>();
  /** Per connector: commands handed out once and not yet reported on. */
  readonly #delivered = new Map<string, CommandRecord[]>();
  /** Per connector: audit rows received, the head the chain has reached, and tamper alarms. */
  readonly audit = new Map<string, { rows: AuditRow[]; head: { seq: number; hash: string }; alarms: string[] }>();

  constructor(logger: Logger) {
    this.#log = logger;
  }

  get(jti: string): CommandRecord | undefined {
    const r = this.#records.get(jti);
    if (r) this.#expire(r, Date.now());
    return r;
  }

  seen(connector: string): ConnectorSeen {
    return this.#seen.get(connector) ?? { lastPollAt: null, polls: 0 };
  }

  /** Queues a signed envelope for `connector` (the partner API after its checks, or a test bypassing it). */
  enqueue(record: Omit<CommandRecord, "state" | "createdAt">): CommandRecord {
    const full: CommandRecord = { ...record, state: "queued", createdAt: new Date().toISOString() };
    this.#records.set(full.jti, full);
    const queue = this.#queues.get(record.connector) ?? [];
    queue.push(full.jti);
    this.#queues.set(record.connector, queue);
    for (const wake of this.#waiters.get(record.connector) ?? []) wake();
    return full;
  }

  /** GET /v1/commands?wait=N for the connector `cn` (the client certificate's, never a parameter). */
  async poll(res: ServerResponse, cn: string, url: URL): Promise<void> {
    const wait = Math.min(MAX_WAIT_SECONDS, Math.max(0, Number(url.searchParams.get("wait") ?? 0) || 0));
    const polls = this.seen(cn).polls + 1;
    this.#seen.set(cn, { lastPollAt: Date.now(), polls });
    let items = this.#take(cn);
    if (items.length === 0 && wait > 0) {
      await new Promise<void>((resolve) => {
        const waiters = this.#waiters.get(cn) ?? new Set();
        this.#waiters.set(cn, waiters);
        const done = () => {
          clearTimeout(timer);
          waiters.delete(done);
          res.off("close", done);
          resolve();
        };
        const timer = setTimeout(done, wait * 1000);
        waiters.add(done);
        // the response's close, not the request's: a GET's request closes as soon as it is read
        res.once("close", done);
      });
      if (res.destroyed) return;
      this.#seen.set(cn, { lastPollAt: Date.now(), polls: this.seen(cn).polls });
      items = this.#take(cn);
    }
    if (items.length === 0) {
      res.writeHead(204);
      return void res.end();
    }
    if (this.loseNextAnswer) {
      this.loseNextAnswer = false;
      return void res.destroy();
    }
    const body = JSON.stringify({ commands: items.map((r) => ({ jti: r.jti, envelope: r.envelope })) });
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
    res.end(body);
  }

  /** POST /v1/commands/<jti>/result: only the connector the command was for may report it. */
  result(cn: string, jti: string, body: unknown): { status: number; error?: string } {
    const record = this.#records.get(jti);
    if (!record || record.connector !== cn) return { status: 404, error: `no command ${jti} for ${cn}` };
    const parsed = resultBody.safeParse(body);
    if (!parsed.success) return { status: 400, error: `not a command result: ${parsed.error.issues[0]?.message ?? "invalid"}` };
    const r = parsed.data;
    // A redelivered command refused as replayed was taken before, but its "running" never came:
    // the outcome is unknown until (and unless) the first delivery's result arrives.
    if (r.state === "refused" && r.code === "replayed" && record.redelivered) {
      if (!FINAL.has(record.state)) {
        record.state = "failed";
        record.result = { state: "failed", code: "outcome_unknown", reason: "the connector took the command, but its result has not arrived" };
      }
      return { status: 204 };
    }
    if (FINAL.has(record.state) && record.result?.code !== "outcome_unknown") return { status: 204 };
    if (r.state === "running") {
      // the connector took it: from now on only its result counts, not the deadline
      if (!this.#expire(record, Date.now())) record.state = "running";
      return { status: 204 };
    }
    record.state = r.state;
    record.result = { state: r.state, ...(r.code === undefined ? {} : { code: r.code }), ...(r.reason === undefined ? {} : { reason: r.reason }), ...(r.data === undefined ? {} : { data: r.data }) };
    this.#log.info({ jti, connector: cn, state: r.state, code: r.code }, "devcloud: command result");
    return { status: 204 };
  }

  /**
   * POST /v1/audit: rows in order, each hash recomputed and chained to the head received before.
   * A break is a tamper alarm (kept, logged, answered 409); the rows up to it are kept.
   */
  receiveAudit(cn: string, body: unknown): { status: number; body: unknown } {
    const parsed = z.object({ rows: z.array(auditRow).max(10_000) }).safeParse(body);
    if (!parsed.success) return { status: 400, body: { error: "expected {rows:[audit rows]}" } };
    let entry = this.audit.get(cn);
    if (!entry) {
      // This cloud keeps no head across its restarts (in memory): the first rows it sees after one
      // start the chain where they are (their link to what came before is not checked).
      const first = (parsed.data.rows as AuditRow[])[0];
      entry = { rows: [], head: first && first.seq > 1 ? { seq: first.seq - 1, hash: first.prev } : { seq: 0, hash: GENESIS }, alarms: [] };
      this.audit.set(cn, entry);
    }
    for (const row of parsed.data.rows as AuditRow[]) {
      if (row.seq <= entry.head.seq) continue; // sent again after a lost answer
      const { hash, ...fields } = row;
      const problem =
        row.seq !== entry.head.seq + 1
          ? `row ${entry.head.seq + 1} is missing (got ${row.seq})`
          : row.prev !== entry.head.hash
            ? `row ${row.seq} does not follow row ${entry.head.seq} received before: the log was changed`
            : rowHash(fields) !== hash
              ? `row ${row.seq} does not match its hash: it was changed`
              : null;
      if (problem) {
        entry.alarms.push(problem);
        this.#log.warn({ connector: cn, problem }, "devcloud: audit log tampering");
        return { status: 409, body: { error: "audit_chain_broken", problem, head: entry.head } };
      }
      entry.rows.push(row);
      entry.head = { seq: row.seq, hash };
    }
    return { status: 200, body: { head: entry.head } };
  }

  /**
   * Queued commands for `cn` that can still run, oldest first; marked delivered. A command still
   * "delivered" when the next poll comes was not taken (the connector posts "running" before it
   * polls again): its answer was lost, so it is offered once more; the connector's replay store
   * refuses it if it was taken after all.
   */
  #take(cn: string): CommandRecord[] {
    const queue = this.#queues.get(cn) ?? [];
    const now = Date.now();
    const out: CommandRecord[] = [];
    const poll = this.seen(cn).polls;
    for (const record of this.#delivered.get(cn) ?? []) {
      if (record.state !== "delivered" || record.redelivered || (record.deliveredOnPoll ?? poll) >= poll || this.#expire(record, now)) continue;
      record.redelivered = true;
      record.deliveredOnPoll = poll;
      out.push(record);
    }
    this.#delivered.set(cn, (this.#delivered.get(cn) ?? []).filter((r) => r.state === "delivered" && !r.redelivered));
    while (queue.length > 0 && out.length < MAX_PER_POLL) {
      const record = this.#records.get(queue.shift()!);
      if (!record || record.state !== "queued" || this.#expire(record, now)) continue;
      record.state = "delivered";
      record.deliveredOnPoll = poll;
      out.push(record);
      this.#delivered.set(cn, [...(this.#delivered.get(cn) ?? []), record]);
    }
    return out;
  }

  /** A command not yet running when its deadline or its envelope's exp passes is timed out. */
  #expire(record: CommandRecord, now: number): boolean {
    if (FINAL.has(record.state) || record.state === "running") return FINAL.has(record.state);
    if (now < Date.parse(record.deadline) && now < record.exp * 1000) return false;
    record.state = "timed_out";
    record.result = { state: "failed", code: "timed_out", reason: "the connector did not take the command before its deadline" };
    return true;
  }
}
