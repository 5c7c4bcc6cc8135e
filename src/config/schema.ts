import { z } from "zod";
import { found } from "./describe.ts";
import { parseBrowsePath, parseSelectPath } from "./browse-path.ts";
import { nodeIdKey, parseNodeIdString } from "./nodeid.ts";
import { ACTIONS, NUMERIC_TYPES, READ_ONLY_ACTIONS, VALUE_TYPES } from "../commands/actions.ts";
import { LISTEN_EXPECTED, parseListen } from "./listen.ts";
import { formatSize, parseSize, SIZE_FORMAT, SIZE_PATTERN } from "./size.ts";

/**
 * The single source of truth for kerf.yaml and the mapping file: the TypeScript types are
 * inferred from it, `npm run schema` derives config/*.schema.json from it, and the loader
 * validates with it. Messages follow one shape: "<what is wrong> (found <x>; expected <y>)".
 */

/** Error option for a check: the message names what was found and what is expected. */
function bad(what: string, expected: string) {
  return { error: (issue: { input?: unknown }) => `${what} (found ${found(withoutUserinfo(issue.input))}; expected ${expected})` };
}

/** A URL's user and password are a secret even where the URL is refused: the message shows "***" instead. */
function withoutUserinfo(value: unknown): unknown {
  return typeof value === "string" ? value.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/?#]*@/i, "$1***@") : value;
}

/**
 * An object that refuses unknown fields. The message carries the allowed field names; the
 * loader turns it into one line per unknown field (see issues.ts).
 */
function strict<T extends z.core.$ZodLooseShape>(shape: T) {
  const allowed = Object.keys(shape).join(", ");
  return z.strictObject(shape, { error: (issue) => (issue.code === "unrecognized_keys" ? allowed : undefined) });
}

/**
 * Cross-field checks run even when a field already failed, so that one run reports all
 * problems; they therefore read the value defensively (it may be partly invalid).
 */
const evenWithErrors = { when: () => true };

function str(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}

function field(value: unknown, key: string): unknown {
  return value !== null && typeof value === "object" ? (value as Record<string, unknown>)[key] : undefined;
}

function list(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

function describe<T extends z.ZodType>(schema: T, description: string): T {
  return schema.meta({ description });
}

/** Whole milliseconds within [min, max]. */
function millis(min: number, max: number) {
  return z.int().min(min).max(max);
}

/** A byte size: a number, or a string with a unit; always a number of bytes after parsing. */
function byteSize(min: number, max: number) {
  return z
    .union([z.number(), z.string().regex(SIZE_PATTERN, bad("not a size", SIZE_FORMAT))])
    .transform((value, ctx) => {
      if (typeof value === "number") return value;
      const bytes = parseSize(value);
      if (bytes === undefined) {
        ctx.addIssue({ code: "custom", input: value, message: `not a size (found ${found(value)}; expected ${SIZE_FORMAT})` });
        return z.NEVER;
      }
      return bytes;
    })
    .pipe(
      z
        .int()
        .min(min, bad("size too small", `at least ${formatSize(min)}`))
        .max(max, bad("size too large", `at most ${formatSize(max)}`)),
    );
}

const filePath = z.string().min(1).refine((p) => !p.includes("\0"), bad("not a file path", "a path without NUL characters"));

const nodeId = z.string().superRefine((s, ctx) => {
  try {
    parseNodeIdString(s);
  } catch (err) {
    ctx.addIssue({ code: "custom", input: s, message: (err as Error).message });
  }
});

// ---------------------------------------------------------------------------------------------
// Connector config (kerf.yaml)

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace"] as const;
export const SECURITY_MODES = ["None", "Sign", "SignAndEncrypt"] as const;
/** What security.mode takes: a mode, or best (the strongest mode and policy the server offers, chosen on each connect). */
export const SECURITY_MODE_CHOICES = [...SECURITY_MODES, "best"] as const;
export const SECURITY_POLICIES = ["None", "Basic128Rsa15", "Basic256", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"] as const;
/** Policies that OPC UA has deprecated (SHA-1, weak key sizes): only with allowDeprecated: true. */
export const DEPRECATED_POLICIES: ReadonlySet<string> = new Set(["Basic128Rsa15", "Basic256"]);
const CURRENT_POLICIES = "Basic256Sha256, Aes128_Sha256_RsaOaep or Aes256_Sha256_RsaPss";

export const MACHINE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const machineId = z.string().regex(MACHINE_ID, bad("not a valid machine id", "1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"));

const instance = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,62}$/, bad("not a valid instance id", "1-63 lower-case letters, digits or '-', starting with a letter or digit"));

const ENDPOINT_FORMAT = "opc.tcp://host:port[/path]";
const ENDPOINT = /^opc\.tcp:\/\/[^\s/?#]+/;
// The regex goes into the JSON Schema; the refine adds what a regex cannot, and stays quiet when
// the regex already failed (one message per field). `abort` would do that too, but it also
// stops the cross-field checks elsewhere in the file.
const endpoint = z
  .string()
  .regex(ENDPOINT, bad("not an OPC UA endpoint", ENDPOINT_FORMAT))
  .refine((s) => !ENDPOINT.test(s) || URL.canParse(s), bad("not an OPC UA endpoint", ENDPOINT_FORMAT));

const security = strict({
  mode: describe(
    z.enum(SECURITY_MODE_CHOICES).default("SignAndEncrypt"),
    "Message security mode, or best: the strongest mode and policy the server offers, ranked by Kerf (then leave policy out). Default SignAndEncrypt.",
  ),
  policy: describe(z.enum(SECURITY_POLICIES).optional(), "Security policy. Default Basic256Sha256 (None with mode None); not with mode best."),
  allowDeprecated: describe(z.boolean().default(false), "Must be true to use the deprecated policies Basic128Rsa15 or Basic256, also for mode best to pick them."),
})
  .superRefine((value, ctx) => {
    const mode = str(field(value, "mode"));
    const policy = str(field(value, "policy"));
    if (policy === undefined) return; // the default suits the mode
    if (mode === "best") {
      ctx.addIssue({
        code: "custom",
        path: ["policy"],
        input: policy,
        message: `mode best picks the policy itself, the strongest the server offers, so a policy here would be ignored (found policy ${policy}; expected no policy with mode best, or mode SignAndEncrypt or Sign to require ${policy})`,
      });
      return;
    }
    // Only judge the combination of values that are themselves valid.
    if (!SECURITY_MODES.some((m) => m === mode) || !SECURITY_POLICIES.some((p) => p === policy)) return;
    if (mode === "None" && policy !== "None") {
      ctx.addIssue({
        code: "custom",
        path: ["policy"],
        input: policy,
        message: `mode None sends everything in clear, so it cannot use a security policy (found policy ${policy}; expected policy None, or mode Sign or SignAndEncrypt)`,
      });
    } else if (mode !== "None" && policy === "None") {
      ctx.addIssue({
        code: "custom",
        path: ["policy"],
        input: policy,
        message: `mode ${mode} needs a security policy (found policy None; expected ${CURRENT_POLICIES}, or mode None)`,
      });
    }
    if (DEPRECATED_POLICIES.has(policy) && field(value, "allowDeprecated") !== true) {
      ctx.addIssue({
        code: "custom",
        path: ["policy"],
        input: policy,
        message: `policy ${policy} is deprecated and needs allowDeprecated: true (found ${policy}; expected ${CURRENT_POLICIES})`,
      });
    }
  }, evenWithErrors)
  // With mode best the policy is chosen on each connect, and this one goes unused.
  .transform((s) => ({ ...s, policy: s.policy ?? (s.mode === "None" ? "None" : "Basic256Sha256") }));

const anonymousUser = strict({ type: z.literal("anonymous") });

const usernameUser = strict({
  type: z.literal("username"),
  username: describe(z.string().min(1).max(256), "The user name the server knows, 1-256 characters."),
  passwordFile: describe(filePath.optional(), "File holding the password (a trailing newline is ignored)."),
  // The value is not echoed on error: someone may have pasted the password here by mistake.
  passwordEnv: describe(
    z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "not an environment variable name (expected letters, digits and '_', not starting with a digit)").optional(),
    "Environment variable holding the password.",
  ),
}).superRefine((u, ctx) => {
  const file = field(u, "passwordFile");
  const env = field(u, "passwordEnv");
  if (file === undefined && env === undefined) {
    ctx.addIssue({ code: "custom", path: [], input: undefined, message: "a username needs a password source (found neither passwordFile nor passwordEnv; expected exactly one of them)" });
  } else if (file !== undefined && env !== undefined) {
    ctx.addIssue({ code: "custom", path: ["passwordEnv"], input: undefined, message: "two password sources (found both passwordFile and passwordEnv; expected exactly one of them)" });
  }
}, evenWithErrors);

const certificateUser = strict({
  type: z.literal("certificate"),
  certificateFile: describe(filePath, "PEM user certificate (RSA: OPC UA has no ECC user certificates)."),
  privateKeyFile: describe(filePath, "PEM private key of that certificate."),
});

const user = z.discriminatedUnion("type", [anonymousUser, usernameUser, certificateUser]);

const machine = strict({
  id: describe(machineId, "The machine's id in the cloud; unique within this config."),
  endpoint: describe(endpoint, "OPC UA endpoint URL, opc.tcp://host:port[/path]."),
  security: describe(security.default({ mode: "SignAndEncrypt", policy: "Basic256Sha256", allowDeprecated: false }), "How the channel to the server is secured. Default SignAndEncrypt with Basic256Sha256."),
  user: describe(user.default({ type: "anonymous" }), "How the connector identifies itself to the server. Default anonymous."),
  connectTimeoutMs: describe(millis(100, 600_000).default(10_000), "Milliseconds to wait for the connection, 100..600000. Default 10000."),
  sessionTimeoutMs: describe(millis(1_000, 3_600_000).default(60_000), "OPC UA session timeout in milliseconds, 1000..3600000. Default 60000."),
  trustOnFirstUse: describe(
    z.boolean().default(false),
    "Commissioning only: trust the first server certificate this endpoint presents, with a WARN log line; a different one later is refused. Default false: trust it with kerf trust accept.",
  ),
  allowHostnameMismatch: describe(
    z.boolean().default(false),
    "Legacy machines: accept a server certificate whose subjectAltName does not name the endpoint's host (logged as a warning on each connect). Default false.",
  ),
  // A username over mode None is allowed here: the server's token policy may still encrypt the
  // password. Whether it does is only known from the endpoint; the session refuses it otherwise.
});

const PIN_FORMAT = `"sha256/" followed by the base64 SHA-256 of the key's SubjectPublicKeyInfo (44 characters)`;
const PIN = /^sha256\/[A-Za-z0-9+/]{43}=$/;
const pin = z
  .string()
  .regex(PIN, bad("not an SPKI pin", PIN_FORMAT))
  // 43 base64 characters carry 258 bits: the last one must leave the 2 spare bits zero.
  .refine((s) => {
    const b64 = s.slice("sha256/".length);
    return !PIN.test(s) || Buffer.from(b64, "base64").toString("base64") === b64;
  }, bad("not an SPKI pin", PIN_FORMAT));

const URL_FORMAT = "https://host[:port][/path], without user or password";
const HTTPS = /^https:\/\//;
const cloudUrl = z
  .string()
  .regex(HTTPS, bad("not an https URL", URL_FORMAT))
  .refine((s) => !HTTPS.test(s) || isHttpsUrl(s), bad("not an https URL", URL_FORMAT));

function isHttpsUrl(s: string): boolean {
  if (!URL.canParse(s)) return false;
  const url = new URL(s);
  // Credentials in the URL would be a secret in the config file, and in every log of the URL.
  return url.protocol === "https:" && url.hostname !== "" && url.username === "" && url.password === "";
}

const PROXY_URL_FORMAT = "http://host:port or https://host:port, without user, password or path";
const proxyUrl = z.string().refine(isProxyUrl, bad("not a proxy URL", PROXY_URL_FORMAT));

function isProxyUrl(s: string): boolean {
  if (!URL.canParse(s)) return false;
  const url = new URL(s);
  // The port is required: curl and Node disagree on the default (1080 against 80).
  const port = /^[a-z]+:\/\/(\[[^\]]*\]|[^/:?#]*):\d+\/?$/i.test(s);
  return (url.protocol === "http:" || url.protocol === "https:") && url.hostname !== "" && url.username === "" && url.password === "" && port;
}

const proxy = strict({
  url: describe(proxyUrl, `The HTTP CONNECT proxy: ${PROXY_URL_FORMAT}.`),
  usernameFile: describe(filePath.optional(), "File holding the user name for Basic authentication at the proxy."),
  passwordFile: describe(filePath.optional(), "File holding the password for Basic authentication at the proxy; a secret, mode 0600."),
}).superRefine((p, ctx) => {
  const user = field(p, "usernameFile");
  const password = field(p, "passwordFile");
  if ((user === undefined) !== (password === undefined)) {
    const missing = user === undefined ? "usernameFile" : "passwordFile";
    ctx.addIssue({ code: "custom", path: [missing], input: undefined, message: `${missing} is missing (found only ${missing === "usernameFile" ? "passwordFile" : "usernameFile"}; expected both for Basic authentication, or neither)` });
  }
}, evenWithErrors);

export const KEY_TYPES = ["ec", "rsa"] as const;

const enrolment = strict({
  url: describe(cloudUrl, "EST base URL (RFC 7030), e.g. https://cloud.example.com/.well-known/est; pinned with cloud.pins and cloud.caFile like the ingest."),
  tokenFile: describe(
    filePath.optional(),
    "File with the one-time bootstrap token for the first enrolment by `kerf run` (`kerf enroll --token-file` takes one on the command line); read only while the instance has no certificate.",
  ),
  keyType: describe(z.enum(KEY_TYPES).default("ec"), "Type of the instance key generated on first start: ec (P-256) or rsa (2048 bits). Default ec."),
  renewAt: describe(z.number().min(0.1).max(0.95).default(2 / 3), "Renew the certificate at this fraction of its lifetime, 0.1..0.95. Default 2/3."),
  rekey: describe(z.boolean().default(false), "Generate a new key at each renewal. Default false (the key stays; a renewal changes only the certificate)."),
});

const cloud = strict({
  url: describe(cloudUrl, "Base URL of the cloud ingest API; https only."),
  pins: describe(
    z
      .array(pin)
      .min(1)
      .superRefine((pins, ctx) => {
        list(pins).forEach((p, i) => {
          const first = list(pins).indexOf(p);
          if (typeof p === "string" && first !== i) ctx.addIssue({ code: "custom", path: [i], input: p, message: `duplicate pin (found the pin of pins[${first}] again; expected each pin once)` });
        });
      }, evenWithErrors),
    'SPKI pins "sha256/<base64>" of the cloud key or its CA; at least one, plus a backup pin.',
  ),
  caFile: describe(filePath.optional(), "PEM trust anchors for the cloud's chain; default: the system CAs."),
  identity: describe(
    strict({ certificateFile: describe(filePath, "PEM client certificate."), privateKeyFile: describe(filePath, "PEM private key of that certificate.") }).optional(),
    "The connector's client certificate and key; default: files in <state-dir>/identity/.",
  ),
  auth: describe(
    strict({
      issuer: describe(cloudUrl, "The OAuth 2.0 authorization server's issuer URL (https); its metadata is discovered. It must present a pinned key too."),
      method: describe(z.enum(["tls_client_auth", "private_key_jwt"]).default("tls_client_auth"), "How the connector authenticates for a token: tls_client_auth (its certificate, RFC 8705) or private_key_jwt (a JWT signed with its key, RFC 7523). Default tls_client_auth."),
      scope: describe(z.string().regex(/^[\x21\x23-\x5B\x5D-\x7E]+( [\x21\x23-\x5B\x5D-\x7E]+)*$/, bad("not an OAuth scope", "space-separated scope tokens")).default("ingest"), "The scope asked for. Default ingest."),
      resource: describe(cloudUrl.optional(), "The resource indicator (RFC 8707), the tokens' audience; default cloud.url."),
    }).optional(),
    "Bearer access tokens (OAuth 2.0 client credentials), bound to the instance certificate; without it no token is sent (mutual TLS only).",
  ),
  enrolment: describe(enrolment.optional(), "Enrolment and renewal of the instance certificate over EST; not together with identity."),
  concurrency: describe(z.int().min(1).max(16).default(2), "POST requests in flight, 1..16. Default 2."),
  requestTimeoutMs: describe(millis(100, 600_000).default(30_000), "Longest time for one request in milliseconds, 100..600000; below it the deadline follows the cloud's recent response times. Default 30000."),
  retry: describe(strict({
    initialDelayMs: describe(millis(1, 600_000).default(500), "First backoff delay in milliseconds, 1..600000. Default 500."),
    maxDelayMs: describe(millis(1, 3_600_000).default(30_000), "Largest backoff delay in milliseconds, 1..3600000, at least initialDelayMs. Default 30000."),
  })
    .superRefine((r, ctx) => {
      const initial = field(r, "initialDelayMs");
      const max = field(r, "maxDelayMs");
      if (typeof max === "number" && typeof initial === "number" && max < initial) {
        ctx.addIssue({ code: "custom", path: ["maxDelayMs"], input: max, message: `maxDelayMs is below initialDelayMs (found ${max}; expected at least ${initial})` });
      }
    }, evenWithErrors)
    .default({ initialDelayMs: 500, maxDelayMs: 30_000 }), "Backoff between failed requests, with full jitter: from initialDelayMs, doubling up to maxDelayMs."),
  batch: describe(
    strict({
      maxItems: describe(z.int().min(1).max(1_000_000).default(5000), "Items per POST, 1..1000000. Default 5000."),
      maxBytes: describe(byteSize(1024, 64 * 1024 ** 2).prefault("1MiB"), `Bytes per POST: ${SIZE_FORMAT}. Default 1MiB.`),
    }).default({ maxItems: 5000, maxBytes: 1024 ** 2 }),
    "Limits of one POST.",
  ),
  proxy: describe(
    proxy.optional(),
    "HTTP CONNECT proxy for every cloud connection; TLS with the cloud runs end to end through it. Default: HTTPS_PROXY and NO_PROXY from the environment, else direct.",
  ),
}).superRefine((c, ctx) => {
  if (field(c, "identity") !== undefined && field(c, "enrolment") !== undefined) {
    ctx.addIssue({ code: "custom", path: ["enrolment"], input: field(c, "enrolment"), message: "enrolment and identity exclude each other (found both; expected identity files provisioned by hand, or enrolment over EST)" });
  }
}, evenWithErrors);

export const WHEN_FULL = ["dropOldest"] as const;

const buffer = strict({
  // prefault: the default is given as the user would write it, and parsed like their value.
  maxBytes: describe(byteSize(1024 ** 2, Number.MAX_SAFE_INTEGER).prefault("1GiB"), `Disk used by the buffer: ${SIZE_FORMAT}. Default 1GiB, minimum 1MiB.`),
  whenFull: describe(z.enum(WHEN_FULL).default("dropOldest"), "What happens when the buffer is full: dropOldest deletes the oldest data and counts it."),
  encryption: describe(
    strict({
      keyFile: describe(
        filePath,
        "The key: 32 random bytes, 64 hex characters or 44 base64 characters (e.g. head -c 32 /dev/urandom > key), mode 0600 or 0400, kept outside the state directory.",
      ),
    }).optional(),
    "Encrypt every stored batch with AES-256-GCM. Default: off (said once at start).",
  ),
});

const clock = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, bad("not a time of day", "HH:MM, 24-hour clock"));
export const WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"] as const;

const update = strict({
  trustedRoot: describe(
    filePath,
    "The TUF root.json this connector trusts from the start (the image ships it at /app/trust/root.json); later roots are verified against it.",
  ),
  url: describe(cloudUrl.optional(), "Base URL of the signed repository (metadata under <url>/tuf/metadata/, bundles under <url>/tuf/targets/). Default cloud.url, over the pinned uplink."),
  mirror: describe(
    cloudUrl.optional(),
    "A second origin of the same repository, reached with the system CAs (not the pins) when the pinned one fails: TUF metadata is signed, so it needs no trusted transport. The recovery path from a pin lock-out.",
  ),
  checkIntervalSeconds: describe(z.int().min(10).max(30 * 86_400).default(21_600), "Seconds between checks, default 21600 (6 h); each instance adds a stable stagger of up to one interval."),
  retryAfterErrorSeconds: describe(z.int().min(10).max(30 * 86_400).default(28_800), "Seconds to wait after a failed check, default 28800 (8 h)."),
  apply: describe(z.enum(["auto", "manual"]).default("auto"), "auto installs a verified newer release when allowed; manual only downloads it, `kerf update apply` installs. Default auto."),
  healthTimeoutSeconds: describe(
    z.int().min(5).max(3_600).default(120),
    "Seconds a new version has to become healthy (config loaded, buffer open, machines connected or retrying, a batch acknowledged) before the launcher rolls it back. Default 120.",
  ),
  window: describe(
    strict({
      days: describe(z.array(z.enum(WEEKDAYS)).min(1).default([...WEEKDAYS]), "Days on which the window opens, default every day."),
      from: describe(clock, "Start of the window, HH:MM."),
      to: describe(clock, "End of the window, HH:MM; before from means the window runs past midnight."),
      timezone: describe(z.enum(["local", "UTC"]).default("local"), "Clock of from and to: local (the container's TZ) or UTC. Default local."),
    }).optional(),
    "Maintenance window: updates are installed only inside it. Default: any time.",
  ),
  lock: describe(
    strict({
      file: describe(filePath.optional(), "While this file exists, no update is installed (like balena's update lock): a job controller can create it."),
      values: describe(
        z
          .array(
            strict({
              machine: describe(machineId, "A machine id of this config."),
              key: describe(z.string().min(1), "A data-point key of the mapping."),
              equals: describe(z.array(z.union([z.string(), z.number(), z.boolean()])).min(1), "While the key's latest value is one of these, no update is installed."),
            }),
          )
          .optional(),
        "Machine states that hold the update lock, e.g. a job running.",
      ),
    }).optional(),
    "Update lock: what holds installation back. Default: nothing.",
  ),
});

/** Node ids given twice in one list (by nodeIdKey of `keyOf`'s fields), each reported at its second entry. */
function noRepeats(what: string, keyOf: (entry: unknown) => string | undefined) {
  return (entries: unknown[], ctx: z.RefinementCtx) => {
    const seen = new Map<string, number>();
    list(entries).forEach((e, i) => {
      let key: string | undefined;
      try {
        key = keyOf(e);
      } catch {
        return; // an invalid node id is reported by its own field
      }
      if (key === undefined) return;
      const first = seen.get(key);
      if (first === undefined) seen.set(key, i);
      else ctx.addIssue({ code: "custom", path: [i], input: e, message: `duplicate ${what} (found the ${what} of [${first}] again; expected each once)` });
    });
  };
}

const valueType = z.enum(VALUE_TYPES);

const writableNode = strict({
  node: describe(nodeId, "A node that remote writes may change: its NodeId string, as commands name it."),
  type: describe(valueType, "Its OPC UA data type; a written value must have it (a number in range for integers). Checked against the server at start."),
  min: describe(z.number().optional(), "Smallest value a write may set (numeric types only). Default: the type's range."),
  max: describe(z.number().optional(), "Largest value a write may set (numeric types only). Default: the type's range."),
}).superRefine((w, ctx) => {
  const type = field(w, "type");
  const min = field(w, "min");
  const max = field(w, "max");
  for (const [name, v] of [["min", min], ["max", max]] as const) {
    if (v !== undefined && typeof type === "string" && (VALUE_TYPES as readonly string[]).includes(type) && !NUMERIC_TYPES.has(type as (typeof VALUE_TYPES)[number])) {
      ctx.addIssue({ code: "custom", path: [name], input: v, message: `${name} needs a numeric type (found type ${type}; expected a number type, or no ${name})` });
    }
  }
  if (typeof min === "number" && typeof max === "number" && max < min) ctx.addIssue({ code: "custom", path: ["max"], input: max, message: `max is below min (found ${max}; expected at least ${min})` });
}, evenWithErrors);

const callableMethod = strict({
  object: describe(nodeId, "The object the method is called on (NodeId string)."),
  method: describe(nodeId, "The method (NodeId string)."),
  inputs: describe(z.array(valueType).max(64).default([]), "The OPC UA types of its input arguments, in order; a call must give exactly these. Default: none."),
});

const commandMachine = strict({
  write: describe(
    z.array(writableNode).superRefine(noRepeats("node", (e) => nodeIdKey(String(field(e, "node")))), evenWithErrors).default([]),
    "Nodes that remote writes may change, each with its type. Default: none.",
  ),
  call: describe(
    z
      .array(callableMethod)
      .superRefine(noRepeats("method", (e) => `${nodeIdKey(String(field(e, "object")))} ${nodeIdKey(String(field(e, "method")))}`), evenWithErrors)
      .default([]),
    "Methods that remote calls may run. Default: none.",
  ),
});

const commands = strict({
  keys: describe(filePath, "JWK set file of the cloud's command-signing public keys (P-256 or Ed25519, each with a kid): only envelopes they signed are taken."),
  actions: describe(
    z
      .array(z.enum(ACTIONS))
      .superRefine((a, ctx) => {
        list(a).forEach((x, i) => {
          if (list(a).indexOf(x) !== i) ctx.addIssue({ code: "custom", path: [i], input: x, message: `duplicate action (found ${found(x)} twice; expected each once)` });
        });
      }, evenWithErrors)
      .default([...READ_ONLY_ACTIONS]),
    `Actions this connector runs, whatever the cloud allows. Default: ${READ_ONLY_ACTIONS.join(", ")} (read-only).`,
  ),
  machines: describe(
    z
      .record(machineId, commandMachine)
      .transform((r) => Object.assign(Object.create(null) as Record<string, z.infer<typeof commandMachine>>, r))
      .default(Object.create(null) as Record<string, z.infer<typeof commandMachine>>),
    "Per machine id: the nodes remote writes may change and the methods remote calls may run. Default: none (writes and calls are refused).",
  ),
  clockSkewSeconds: describe(z.int().min(0).max(300).default(30), "Clock difference allowed between the cloud and this connector when checking iat and exp, 0..300. Default 30."),
  maxLifetimeSeconds: describe(z.int().min(10).max(3600).default(300), "Longest lifetime (exp − iat) of a command envelope accepted, 10..3600. Default 300."),
});

const status = strict({
  listen: describe(
    z
      .string()
      .superRefine((value, ctx) => {
        const parsed = parseListen(value);
        if (typeof parsed === "string") ctx.addIssue({ code: "custom", input: value, message: `${parsed} (found ${found(value)}; expected ${LISTEN_EXPECTED})` });
      })
      .optional(),
    "Also serve /metrics and /status on 127.0.0.1:PORT, [::1]:PORT or unix:/path; never a reachable address. Default: no port (the metrics go to <state>/metrics.prom).",
  ),
  metricsFile: describe(
    filePath.refine((p) => p.endsWith(".prom"), bad("not a .prom file", "a file name ending in .prom (a node exporter's textfile collector reads only those)")).optional(),
    "Where the Prometheus text goes, e.g. into a node exporter's textfile directory (one file per connector). Default <state-dir>/metrics.prom.",
  ),
  metricsIntervalSeconds: describe(z.int().min(1).max(3_600).default(5), "Seconds between rewrites of the metrics file. Default 5."),
});

export const ConfigSchema = strict({
  instance: describe(instance, "This connector's id."),
  log: describe(strict({ level: describe(z.enum(LOG_LEVELS).default("info"), "fatal, error, warn, info, debug or trace; SIGHUP re-reads it from this file. Default info.") }).default({ level: "info" }), "Logging (JSON lines on stdout)."),
  mapping: describe(filePath, "The node-id mapping file, relative to this file's directory."),
  machines: describe(z
    .array(machine)
    .min(1)
    .superRefine((machines, ctx) => {
      const seen = new Map<string, number>();
      list(machines).forEach((m, i) => {
        const id = str(field(m, "id"));
        if (id === undefined) return;
        const first = seen.get(id);
        if (first === undefined) seen.set(id, i);
        else ctx.addIssue({ code: "custom", path: [i, "id"], input: id, message: `duplicate machine id (found ${found(id)}, already used by machines[${first}]; expected each id once)` });
      });
    }, evenWithErrors), "The OPC UA servers (machines) this connector reads; at least one, each id once."),
  cloud: describe(cloud, "Where and how data leaves: the ingest URL and its pins, the instance identity, tokens, proxy and request limits."),
  buffer: describe(buffer.default({ maxBytes: 1024 ** 3, whenFull: "dropOldest" }), "The durable local buffer in the state directory (SQLite)."),
  update: describe(update.optional(), "Self-update from the signed channel (TUF). Default: off, said once at start."),
  commands: describe(
    commands.optional(),
    "Remote commands from partner apps, signed by the cloud and checked against this local policy. Default: off (no command is taken).",
  ),
  status: describe(status.default({ metricsIntervalSeconds: 5 }), "The local status and metrics: a file in the state directory, and optionally a loopback or Unix socket endpoint."),
})
  .superRefine((c, ctx) => {
    const ids = new Set(list(field(c, "machines")).map((m) => str(field(m, "id"))));
    const machines = field(field(c, "commands"), "machines");
    if (machines === null || typeof machines !== "object") return;
    for (const id of Object.keys(machines)) {
      if (!ids.has(id)) ctx.addIssue({ code: "custom", path: ["commands", "machines", id], input: id, message: `not a machine of this config (found ${found(id)}; expected one of the machine ids under machines)` });
    }
  }, evenWithErrors)
  .meta({ title: "Kerf connector configuration", description: "kerf.yaml: see config/kerf.example.yaml for every option with its default." });

export type Config = z.infer<typeof ConfigSchema>;
export type MachineConfig = Config["machines"][number];
export type SecurityConfig = MachineConfig["security"];
export type UserConfig = MachineConfig["user"];
export type CloudConfig = Config["cloud"];
export type BufferConfig = Config["buffer"];
export type UpdateConfig = NonNullable<Config["update"]>;
export type CommandsConfig = NonNullable<Config["commands"]>;
export type StatusConfig = Config["status"];

// ---------------------------------------------------------------------------------------------
// Node-id mapping (mapping.yaml)

export const DATA_POINT_KEY = /^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,199}$/;

const dataPointKey = z.string().regex(DATA_POINT_KEY, bad("not a valid data point key", "1-200 letters, digits, '_', '.', ':', '/' or '-', not starting with '.', ':', '/' or '-'"));

const samplingInterval = z
  .int()
  .min(0, bad("a sampling interval cannot be negative", "0 (as fast as the server can) or a number of milliseconds; leave it out to use the group's value"))
  .max(3_600_000);
const queueSize = z.int().min(1).max(10_000);

export const DEADBAND_TYPES = ["absolute", "percent"] as const;
export const DATA_CHANGE_TRIGGERS = ["status", "statusValue", "statusValueTimestamp"] as const;
/** What an event subscription selects when the mapping does not say. */
export const DEFAULT_EVENT_SELECT = ["EventId", "EventType", "SourceName", "Time", "Message", "Severity"];

const deadband = strict({
  type: describe(z.enum(DEADBAND_TYPES), "absolute: in the value's own unit; percent: of the node's EURange, which the server must define."),
  value: describe(z.number().min(0), "Changes up to this size are not reported; 0 switches the deadband off."),
}).superRefine((d, ctx) => {
  const value = field(d, "value");
  if (field(d, "type") === "percent" && typeof value === "number" && value > 100) {
    ctx.addIssue({ code: "custom", path: ["value"], input: value, message: `a percent deadband is at most 100 (found ${value}; expected 0..100)` });
  }
}, evenWithErrors);

const dataChangeTrigger = z.enum(DATA_CHANGE_TRIGGERS);
const heartbeatSeconds = z.int().min(0).max(86_400);

function checked(parse: (s: string) => unknown) {
  return z.string().superRefine((s, ctx) => {
    try {
      parse(s);
    } catch (err) {
      ctx.addIssue({ code: "custom", input: s, message: (err as Error).message });
    }
  });
}

const browsePath = checked(parseBrowsePath);
const selectPath = checked(parseSelectPath);

// OPC UA NumericRange (Part 4 §7.27): one index or lo:hi with lo < hi, one per dimension.
const NUMERIC_RANGE = /^\d{1,10}(:\d{1,10})?(,\d{1,10}(:\d{1,10})?)*$/;
const INDEX_RANGE_FORMAT = `an index "3" or range "0:3" (lower < upper), one per dimension separated by ',' (e.g. "0:1,2:4")`;
const indexRange = z
  .string()
  .regex(NUMERIC_RANGE, bad("not an index range", INDEX_RANGE_FORMAT))
  .refine(
    (s) => !NUMERIC_RANGE.test(s) || s.split(",").every((part) => !part.includes(":") || Number(part.split(":")[0]) < Number(part.split(":")[1])),
    bad("not an index range", INDEX_RANGE_FORMAT),
  );

const mappedNode = strict({
  key: describe(dataPointKey, "The data point's key in the cloud; unique per machine."),
  node: describe(nodeId.optional(), "OPC UA NodeId string: [ns=<index>;|nsu=<uri>;](i=|s=|g=|b=)<identifier>. Give node or browsePath."),
  browsePath: describe(browsePath.optional(), "Path from startNode, e.g. /2:Machine/<nsu=urn:x>State.0:Id: '/' any hierarchical reference, '.' components and properties."),
  startNode: describe(nodeId.optional(), "Where browsePath starts. Default i=85 (Objects)."),
  samplingInterval: describe(samplingInterval.optional(), "Overrides the group's samplingInterval."),
  queueSize: describe(queueSize.optional(), "Overrides the group's queueSize."),
  discardOldest: describe(z.boolean().optional(), "Overrides the group's discardOldest."),
  deadband: describe(deadband.optional(), "Overrides the group's deadband."),
  dataChangeTrigger: describe(dataChangeTrigger.optional(), "Overrides the group's dataChangeTrigger."),
  heartbeatSeconds: describe(heartbeatSeconds.optional(), "Overrides the group's heartbeatSeconds."),
  skipFirst: describe(z.boolean().optional(), "Overrides the group's skipFirst."),
  indexRange: describe(indexRange.optional(), 'Part of an array value, e.g. "0:3" (elements 0 to 3).'),
  unit: describe(z.string().min(1).max(64).optional(), "Engineering unit sent with each value (as u), e.g. rpm."),
  scale: describe(z.number().optional(), "Numeric values are sent as v × scale + offset. Default 1."),
  offset: describe(z.number().optional(), "See scale. Default 0."),
}).superRefine((n, ctx) => {
  const node = field(n, "node");
  const path = field(n, "browsePath");
  if (node === undefined && path === undefined) {
    ctx.addIssue({ code: "custom", path: [], input: undefined, message: "a data point needs an address (found neither node nor browsePath; expected exactly one of them)" });
  } else if (node !== undefined && path !== undefined) {
    ctx.addIssue({ code: "custom", path: ["browsePath"], input: path, message: "two addresses (found both node and browsePath; expected exactly one of them)" });
  }
  if (field(n, "startNode") !== undefined && path === undefined) {
    ctx.addIssue({ code: "custom", path: ["startNode"], input: field(n, "startNode"), message: "startNode without browsePath (found startNode only; expected it together with browsePath)" });
  }
}, evenWithErrors);

const eventSubscription = strict({
  key: describe(dataPointKey, "The event message's key in the cloud; unique per machine, among data points too."),
  notifier: describe(nodeId.default("i=2253"), "Node whose events are watched. Default i=2253 (the Server object, which sees all events)."),
  eventType: describe(nodeId.default("i=2041"), "Only events of this type or a subtype, e.g. i=2915 (AlarmConditionType). Default i=2041 (BaseEventType: all)."),
  select: describe(
    z
      .array(selectPath)
      .min(1)
      .max(64)
      .superRefine((paths, ctx) => {
        list(paths).forEach((p, i) => {
          if (typeof p === "string" && list(paths).indexOf(p) !== i) ctx.addIssue({ code: "custom", path: [i], input: p, message: `duplicate select field (found ${found(p)} twice; expected each field once)` });
        });
      }, evenWithErrors)
      .default(DEFAULT_EVENT_SELECT),
    `Event fields by browse path from the event type, e.g. Message, ActiveState/Id, ConditionId. Default ${DEFAULT_EVENT_SELECT.join(", ")}.`,
  ),
  queueSize: describe(queueSize.default(1000), "Events the server queues between publishes, 1..10000. Default 1000."),
});

/**
 * A data point's settings as kept while the mapping is in force, 100,000 of them in a large one:
 * without undefined fields, and with strings of their own. V8 makes the strings parsed from the
 * file slices of its text, so that a kept key or node id would keep the whole file alive (9 MB
 * for 100,000 data points).
 */
function compactNode<T extends object>(o: T): T {
  // A new object, not `delete`: deleting a property turns an object into a dictionary, 3× larger.
  const out: Record<string, unknown> = {};
  for (const k in o) {
    const v = o[k];
    // JSON.parse builds a string of its own (half the time of a copy through a Buffer)
    if (v !== undefined) out[k] = typeof v === "string" ? JSON.parse(JSON.stringify(v)) : v;
  }
  return out as T;
}

const group = strict({
  name: describe(z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/, bad("not a valid group name", "1-64 letters, digits, '_', '.' or '-'")), "The group's name, unique per machine: 1-64 letters, digits, '_', '.' or '-'."),
  publishingInterval: describe(z.int().min(10).max(3_600_000).default(1000), "Milliseconds between publish responses (one subscription per group). Default 1000, minimum 10."),
  samplingInterval: describe(samplingInterval.optional(), "Milliseconds; 0 = as fast as the server can. Default: the publishingInterval."),
  queueSize: describe(queueSize.default(10), "Values the server queues per node between publishes, 1..10000. Default 10."),
  discardOldest: describe(z.boolean().default(true), "When a node's queue overflows, drop the oldest value (true) or the newest. Default true."),
  deadband: describe(deadband.optional(), "Suppress changes up to this size: { type: absolute|percent, value }. Default none."),
  dataChangeTrigger: describe(dataChangeTrigger.optional(), "What counts as a change: status, statusValue or statusValueTimestamp. Default statusValue."),
  heartbeatSeconds: describe(heartbeatSeconds.optional(), "Resend the last value every N s while it does not change, marked hb: true. Default 0 (off)."),
  skipFirst: describe(z.boolean().optional(), "Drop the value each node reports when it is first subscribed. Default false."),
  priority: describe(
    z.int().min(0).max(255).optional(),
    "OPC UA subscription priority 0..255: when several of the machine's subscriptions are due, the server serves the higher first. Default: higher for groups that carry more values per second.",
  ),
  watchdogSeconds: describe(
    z.int().min(1).max(86_400).optional(),
    "Reconnect when this group has had no data for this many seconds (a server that answers but is stuck). Pair it with a heartbeat or with nodes that change. Default: off.",
  ),
  nodes: describe(z.array(mappedNode).default([]), "Data points. A group needs nodes, events or both."),
  events: describe(z.array(eventSubscription).optional(), "Event and alarm subscriptions of this group."),
})
  .superRefine((g, ctx) => {
    if (list(field(g, "nodes")).length === 0 && list(field(g, "events")).length === 0) {
      ctx.addIssue({ code: "custom", path: [], input: undefined, message: "an empty group (found no nodes and no events; expected at least one of them)" });
    }
  }, evenWithErrors)
  .transform((g) => {
    // Resolve per-node settings here, so that consumers never repeat the fallback rules. Settings
    // that neither gives stay undefined: the OPC UA layer's defaults (see src/opcua/types.ts).
    const sampling = g.samplingInterval ?? g.publishingInterval;
    return {
      ...g,
      samplingInterval: sampling,
      nodes: g.nodes.map((n) =>
        compactNode({
          ...n,
          samplingInterval: n.samplingInterval ?? sampling,
          queueSize: n.queueSize ?? g.queueSize,
          discardOldest: n.discardOldest ?? g.discardOldest,
          deadband: n.deadband ?? g.deadband,
          dataChangeTrigger: n.dataChangeTrigger ?? g.dataChangeTrigger,
          heartbeatSeconds: n.heartbeatSeconds ?? g.heartbeatSeconds,
          skipFirst: n.skipFirst ?? g.skipFirst,
        }),
      ),
    };
  });

const machineMapping = strict({
  groups: describe(z.array(group).min(1), "At least one group; each group is one OPC UA subscription (groups share one when the server allows no more)."),
}).superRefine((m, ctx) => {
  const groups = new Map<string, number>();
  const keys = new Map<string, string>();
  // Data points and events share one key space per machine: apply() and the logs name items by key.
  const claim = (kind: string, key: unknown, where: string, path: (string | number)[]) => {
    if (typeof key !== "string") return;
    const prior = keys.get(key);
    if (prior === undefined) keys.set(key, where);
    else ctx.addIssue({ code: "custom", path, input: key, message: `duplicate ${kind} key (found ${found(key)}, already used by ${prior}; expected each key once per machine)` });
  };
  list(field(m, "groups")).forEach((g, gi) => {
    const name = str(field(g, "name"));
    const first = name === undefined ? undefined : groups.get(name);
    if (name !== undefined && first === undefined) groups.set(name, gi);
    else if (first !== undefined) ctx.addIssue({ code: "custom", path: ["groups", gi, "name"], input: name, message: `duplicate group name (found ${found(name)}, already used by groups[${first}]; expected each name once per machine)` });
    list(field(g, "nodes")).forEach((n, ni) => claim("data point", field(n, "key"), `groups[${gi}].nodes[${ni}]`, ["groups", gi, "nodes", ni, "key"]));
    list(field(g, "events")).forEach((e, ei) => claim("event", field(e, "key"), `groups[${gi}].events[${ei}]`, ["groups", gi, "events", ei, "key"]));
  });
}, evenWithErrors);

export const MappingSchema = strict({
  machines: describe(
    z
      .record(machineId, machineMapping)
      // A null prototype, so that a machine id such as "constructor" finds nothing inherited.
      .transform((r) => Object.assign(Object.create(null) as Record<string, z.infer<typeof machineMapping>>, r)),
    "Subscriptions per machine id; each id must be a machine in the connector config.",
  ),
}).meta({ title: "Kerf node-id mapping", description: "mapping.yaml: see config/mapping.example.yaml." });

export type Mapping = z.infer<typeof MappingSchema>;
export type MachineMapping = Mapping["machines"][string];
export type MappingGroup = MachineMapping["groups"][number];
export type MappedNode = MappingGroup["nodes"][number];
