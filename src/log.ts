import { pino, type DestinationStream, type Logger } from "pino";

export type { Logger };

export interface LoggerOptions {
  level?: string;
  name?: string;
  /** Where lines go: 1 (stdout, the default) or 2 (stderr, for commands whose stdout is their answer), or a stream (tests). */
  destination?: 1 | 2 | DestinationStream;
  /** Identical events within this window are logged once, then summed up with a count. Default 10 s. */
  repeatWindowMs?: number;
}

/**
 * One pino root logger; modules take a child with `component`. Secrets never reach it:
 * the redact list covers every field name under which a secret could travel. Lines are JSON,
 * except on a terminal, where a person reads them (KERF_LOG_FORMAT=json|pretty decides otherwise).
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const destination = options.destination ?? 1;
  return pino(
    {
      name: options.name ?? "kerf",
      level: options.level ?? process.env.KERF_LOG_LEVEL ?? "info",
      redact: {
        paths: SECRET_FIELDS.flatMap((f) => [f, `*.${f}`, `*.*.${f}`]),
        censor: "[redacted]",
      },
      hooks: { logMethod: repeatLimiter(options.repeatWindowMs ?? 10_000), streamWrite: (line) => remember(scrub(line)) },
    },
    typeof destination === "number" ? terminalOrJson(destination) : destination,
  );
}

/**
 * Field names under which a secret may travel, at any of the first three levels: pino replaces
 * their values. A secret inside a message text (an error that quotes a header, a URL with
 * credentials, a PEM block) is masked by `scrub` on every line written.
 */
const SECRET_FIELDS = [
  "password",
  "passphrase",
  "key",
  "privateKey",
  "secret",
  "clientSecret",
  "client_secret",
  "token",
  "accessToken",
  "access_token",
  "refreshToken",
  "refresh_token",
  "idToken",
  "bootstrapToken",
  "assertion",
  "client_assertion",
  "authorization",
  "proxyAuthorization",
  "proxy-authorization",
  "cookie",
] as const;

/** Masks bearer tokens, Basic credentials, PEM blocks and user:password@ in URLs within a written line. */
export function scrub(line: string): string {
  return line
    .replace(/(Bearer|Basic) [A-Za-z0-9._~+/-]+=*/g, "$1 [redacted]")
    .replace(/-----BEGIN [^-]+-----[\s\S]*?-----END [^-]+-----/g, "[redacted PEM]")
    .replace(/([a-z][a-z0-9+.-]*:\/\/)[^/@\s"]+@/gi, "$1***@");
}

// The last lines written (after redaction), for the remote `diagnostics` action.
const RECENT_MAX = 2_000;
// A ring: once full, each line overwrites the oldest instead of shifting 2,000 entries.
const recent: string[] = [];
let written = 0;

function remember(line: string): string {
  recent[written++ % RECENT_MAX] = line.length > 8192 ? `${line.slice(0, 8192)}…` : line;
  return line;
}

/** The newest `n` log lines of this process (JSON), as written: redacted and scrubbed; oldest first. */
export function recentLogLines(n: number): string[] {
  const count = Math.min(n, recent.length);
  const out: string[] = [];
  for (let i = written - count; i < written; i++) out.push(recent[i % RECENT_MAX]!.trimEnd());
  return out;
}

/** A logger that writes nowhere, for library use in tests. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}

// ---------------------------------------------------------------------------------------------
// Repeated events

type LogMethod = (this: Logger, ...args: unknown[]) => void;

interface Repeat {
  since: number;
  /** Calls not logged since `since`. */
  count: number;
  /** The newest of them, for the summary line. */
  last?: { logger: Logger; method: LogMethod; fields: object; msg: string };
}

const MAX_TRACKED = 1024;
const chindings = pino.symbols.chindingsSym as unknown as "chindings";

/**
 * A loop that fails the same way many times a second (a repair loop, a refused connect) would
 * fill the disk with one line. An event is its level, message and the logger's bindings
 * (component, machine) plus a `machine` field: the first of a kind is logged, the rest within
 * `windowMs` only counted, and when the window ends one line says how many there were. Other
 * events pass untouched; what an event costs here is one Map lookup.
 */
function repeatLimiter(windowMs: number) {
  const seen = new Map<string, Repeat>();
  return function logMethod(this: Logger, args: unknown[], method: LogMethod, level: number): void {
    const first = args[0];
    const fields = typeof first === "object" && first !== null ? first : undefined;
    // log.warn(err) logs the error's message, which then tells one event from another
    const msg = fields === undefined ? first : (args[1] ?? (fields instanceof Error ? fields.message : undefined));
    const machine = fields !== undefined && "machine" in fields ? String(fields.machine) : "";
    // Any format arguments after the message make a different event, so they are part of the key.
    const rest = args.length > (fields === undefined ? 1 : 2) ? args.slice(fields === undefined ? 1 : 2).join("\u0000") : "";
    const key = `${level}\u0000${(this as unknown as Record<string, string>)[chindings] ?? ""}\u0000${String(msg)}\u0000${machine}\u0000${rest}`;
    const now = Date.now();
    const entry = seen.get(key);
    if (entry === undefined || now - entry.since >= windowMs) {
      if (entry === undefined && seen.size >= MAX_TRACKED) forget(seen, now, windowMs);
      if (entry === undefined) seen.set(key, { since: now, count: 0 });
      else entry.since = now;
      method.apply(this, args);
      return;
    }
    entry.count++;
    entry.last = { logger: this, method, fields: fields instanceof Error ? { err: fields } : (fields ?? {}), msg: String(msg) };
    if (entry.count === 1) {
      setTimeout(() => summarize(seen, key), entry.since + windowMs - now).unref();
    }
  };
}

function summarize(seen: Map<string, Repeat>, key: string): void {
  const entry = seen.get(key);
  if (!entry?.last || entry.count === 0) return;
  const { logger, method, fields, msg } = entry.last;
  const seconds = Math.round((Date.now() - entry.since) / 100) / 10;
  method.apply(logger, [{ ...fields, repeated: entry.count }, `${msg} … repeated ${entry.count} time${entry.count === 1 ? "" : "s"} in ${seconds} s`]);
  // The next window starts now: a steady repeat gives one summary per window.
  entry.since = Date.now();
  entry.count = 0;
  entry.last = undefined;
}

function forget(seen: Map<string, Repeat>, now: number, windowMs: number): void {
  for (const [key, entry] of seen) if (entry.count === 0 && now - entry.since >= windowMs) seen.delete(key);
  // Still full: every event is new (messages with ids in them); keep only those with a summary due.
  if (seen.size >= MAX_TRACKED) for (const [key, entry] of seen) if (entry.count === 0) seen.delete(key);
}

// ---------------------------------------------------------------------------------------------
// A terminal gets one readable line per event

const LEVELS: Record<number, string> = { 10: "TRACE", 20: "DEBUG", 30: "INFO", 40: "WARN", 50: "ERROR", 60: "FATAL" };
const OMIT = new Set(["level", "time", "pid", "hostname", "name", "component", "machine", "msg"]);

function terminalOrJson(fd: 1 | 2): DestinationStream {
  const stream = fd === 1 ? process.stdout : process.stderr;
  const format = process.env.KERF_LOG_FORMAT;
  if (format === "json" || (format !== "pretty" && !stream.isTTY)) return pino.destination(fd);
  const out = pino.destination(fd);
  return { write: (line: string) => void out.write(prettyLine(line)) };
}

/** `12:00:01.123 WARN  opcua saw-1: message key=value …` from one JSON log line. */
export function prettyLine(json: string): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const time = typeof o.time === "number" ? new Date(o.time).toISOString().slice(11, 23) : "";
  const level = (LEVELS[o.level as number] ?? String(o.level)).padEnd(5);
  const where = [o.component, o.machine].filter((x) => x !== undefined).join(" ");
  const fields = Object.entries(o)
    .filter(([k]) => !OMIT.has(k))
    .map(([k, v]) => `${k}=${plain(k === "err" && typeof v === "object" && v !== null && "message" in v ? v.message : v)}`);
  return `${time} ${level} ${where ? `${where}: ` : ""}${String(o.msg ?? "")}${fields.length ? "  " + fields.join(" ") : ""}\n`;
}

function plain(v: unknown): string {
  return typeof v === "string" && /^[^\s="]+$/.test(v) ? v : JSON.stringify(v);
}
