import { existsSync } from "node:fs";
import { AuditLog, auditFile, type AuditRow } from "../commands/audit.ts";
import { intOption, noPositionals, parseCli } from "./args.ts";
import { stateDirOption } from "./state-dir.ts";

export const usage = `usage: kerf audit [--state-dir DIR] [--json] [--verify] [--last N]

Prints the local audit log of remote commands: every command accepted or refused, and each
result, with its time, app, user, action, the digest of its arguments and the reason of a refusal.
The log is hash-chained: --verify checks the whole chain and names the first row that was
changed, removed or moved (exit 1 when there is one).

  --state-dir DIR   the connector's state directory; default $KERF_STATE_DIR or /var/lib/kerf
  --json            one JSON object instead of text
  --verify          check the chain; with --json, the result goes into the object
  --last N          only the newest N rows (default: all)
`;

/** `kerf audit`: reads the log read-only, so it works while kerf run writes to it. */
export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCli(
    argv,
    { "state-dir": { type: "string" }, json: { type: "boolean" }, verify: { type: "boolean" }, last: { type: "string" } },
    "audit",
    usage,
  );
  noPositionals(positionals, "audit", usage);
  const last = values.last === undefined ? undefined : intOption(values.last, "last", 0);
  const file = auditFile(stateDirOption(values["state-dir"]));
  if (!existsSync(file)) {
    // No log yet is not an error: no command has reached this connector.
    if (values.json) process.stdout.write(JSON.stringify({ file, rows: [], ...(values.verify ? { verified: { ok: true, rows: 0 } } : {}) }) + "\n");
    else process.stdout.write(`no audit log at ${file}: no remote command has been received\n`);
    return 0;
  }
  const log = AuditLog.open(file, { readOnly: true });
  try {
    const all = log.rows();
    const rows = last === undefined ? all : all.slice(Math.max(0, all.length - last));
    const verified = values.verify ? log.verify() : undefined;
    if (values.json) {
      process.stdout.write(JSON.stringify({ file, rows, ...(verified ? { verified } : {}) }) + "\n");
    } else {
      process.stdout.write(rows.map(line).join(""));
      if (verified?.ok) process.stdout.write(`chain intact: ${verified.rows} rows, head ${verified.head.slice(0, 16)}…\n`);
      else if (verified) process.stdout.write(`TAMPERED at row ${verified.seq}: ${verified.problem}\n`);
    }
    return verified && !verified.ok ? 1 : 0;
  } finally {
    log.close();
  }
}

function line(r: AuditRow): string {
  const who = `app=${show(r.app)}${r.user === null ? "" : ` user=${show(r.user)}`}`;
  const what = r.outcome === "refused" ? `refused ${show(r.reason)}` : r.outcome === "result" ? `result ${show(r.result)}` : "accepted";
  const args = r.argsSha256 === null ? "" : ` args=sha256:${r.argsSha256.slice(0, 12)}`;
  return `${r.seq} ${r.at} ${show(r.action)} ${who} jti=${show(r.jti)}${args} ${what}\n`;
}

/**
 * A refused row holds what an unverified envelope claimed: anything printable as is, the rest
 * JSON-quoted, so that a forged client_id cannot move the cursor or recolour the terminal.
 */
function show(value: string | null): string {
  if (value === null) return "?";
  return /^[\x21-\x7e][\x20-\x7e]*$/.test(value) ? value : JSON.stringify(value);
}
