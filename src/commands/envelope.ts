/**
 * Verification of a command envelope: a compact JWS (RFC 7515) with JWT claims (RFC 7519),
 * signed by the cloud's command key, checked with jose against the pinned command-signing keys.
 *
 * Header: { alg: ES256 | EdDSA, kid, typ: "kerf-command+jwt" }. The explicit type (RFC 8725
 * §3.11) keeps any other JWT signed by the same key (an access token, an ID token) from passing
 * as a command. Claims: jti, aud (this connector's instance id, a single string), client_id (the
 * partner app), sub (its user, optional), scope, action, args, iat, exp.
 *
 * This module answers "is this a command the cloud signed for us, now, within its scope?". The
 * replay store, the local policy and the audit log come after it (see STATUS-cmd.md).
 */
import { readFile } from "node:fs/promises";
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify, type JSONWebKeySet, type JWK } from "jose";
import { z } from "zod";
import { KerfError } from "../errors.ts";
import { ACTION_ARGS, isAction, scopeAllows, scopeOf, type Action, type ActionArgs } from "./actions.ts";

export const COMMAND_TYP = "kerf-command+jwt";
/** Asymmetric only: a shared secret (HS256) would let anyone who verifies also sign. */
export const COMMAND_ALGORITHMS = ["ES256", "EdDSA"] as const;
export const DEFAULT_CLOCK_SKEW_SECONDS = 30;
/** Longest exp − iat accepted: commands are short-lived, and their jti is kept until exp. */
export const DEFAULT_MAX_LIFETIME_SECONDS = 300;
/** Larger than any envelope that a mapping.set of the largest mapping needs. */
const MAX_ENVELOPE_CHARS = 24 * 1024 * 1024;

/** Why an envelope was refused. Stable: the audit log, the result sent upstream and tests match on it. */
export type RefusalCode =
  /** Not a compact JWS with a JSON header and JSON claims. */
  | "malformed"
  /** alg is not one of COMMAND_ALGORITHMS ("none", HS256, RS256, ...). */
  | "alg_not_allowed"
  /** typ is not kerf-command+jwt. */
  | "wrong_type"
  /** No pinned key with the header's kid (or no kid at all). */
  | "unknown_key"
  /** A pinned kid, but the signature does not verify with its key. */
  | "bad_signature"
  /** aud is not this connector. */
  | "wrong_audience"
  | "expired"
  /** iat lies in the future beyond the allowed clock skew. */
  | "not_yet_valid"
  /** exp − iat is longer than the connector accepts. */
  | "lifetime_too_long"
  | "claim_missing"
  /** A claim of the wrong type or form. */
  | "claim_invalid"
  | "unknown_action"
  /** None of the envelope's scopes allows its action. */
  | "scope_denied"
  /** The action's arguments do not have its shape. */
  | "args_invalid";

/** What an unverified envelope claims, for the audit log of a refusal: never trusted. */
export interface Claimed {
  jti?: string;
  clientId?: string;
  sub?: string;
  action?: string;
}

export interface Refusal {
  code: RefusalCode;
  /** One line for people: what was wrong and what was expected. */
  reason: string;
  claimed: Claimed;
}

export interface Command<A extends Action = Action> {
  jti: string;
  /** The partner app (OAuth client_id). */
  clientId: string;
  /** The user the app acts for, when it acts for one (authorization code flow). */
  sub?: string;
  scope: string;
  action: A;
  args: ActionArgs[A];
  /** Seconds since the epoch. */
  iat: number;
  exp: number;
}

export type Verified = { ok: true; command: Command } | { ok: false; refusal: Refusal };

export interface EnvelopeVerifierOptions {
  /** The pinned command-signing public keys (see loadCommandKeys). */
  keys: JSONWebKeySet;
  /** This connector's instance id: the only aud accepted. */
  instance: string;
  clockSkewSeconds?: number;
  maxLifetimeSeconds?: number;
  /** Milliseconds since the epoch; tests move it. */
  now?: () => number;
}

const REQUIRED = ["jti", "aud", "client_id", "scope", "action", "args", "iat", "exp"];
const text = (max: number) => z.string().min(1).max(max);
const claims = z.object({
  jti: text(128).regex(/^[A-Za-z0-9._~-]+$/, "expected 1-128 URL-safe characters"),
  // Checked below, with its own refusal code.
  aud: z.unknown(),
  client_id: text(256),
  sub: text(256).optional(),
  scope: text(1024),
  action: z.string(),
  args: z.record(z.string(), z.unknown()),
  iat: z.int(),
  exp: z.int(),
});

export class EnvelopeVerifier {
  readonly #jwks: ReturnType<typeof createLocalJWKSet>;
  readonly #instance: string;
  readonly #skew: number;
  readonly #maxLifetime: number;
  readonly #now: () => number;

  constructor(options: EnvelopeVerifierOptions) {
    this.#jwks = createLocalJWKSet(options.keys);
    this.#instance = options.instance;
    this.#skew = options.clockSkewSeconds ?? DEFAULT_CLOCK_SKEW_SECONDS;
    this.#maxLifetime = options.maxLifetimeSeconds ?? DEFAULT_MAX_LIFETIME_SECONDS;
    this.#now = options.now ?? Date.now;
  }

  /** Never throws for a bad envelope: every refusal comes back with its code and reason. */
  async verify(envelope: string): Promise<Verified> {
    const claimed = peek(envelope);
    const refuse = (code: RefusalCode, reason: string): Verified => ({ ok: false, refusal: { code, reason, claimed } });
    if (typeof envelope !== "string" || envelope.length > MAX_ENVELOPE_CHARS) return refuse("malformed", `not a compact JWS of at most ${MAX_ENVELOPE_CHARS} characters`);

    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(envelope);
    } catch {
      return refuse("malformed", "the header does not decode (expected a compact JWS: base64url header.payload.signature)");
    }
    if (typeof header.alg !== "string" || !(COMMAND_ALGORITHMS as readonly string[]).includes(header.alg)) {
      return refuse("alg_not_allowed", `alg ${JSON.stringify(header.alg)} is not allowed (expected ${COMMAND_ALGORITHMS.join(" or ")})`);
    }
    // Without a kid, jose would try whichever pinned key fits the algorithm: name the key, always.
    if (typeof header.kid !== "string" || header.kid === "") return refuse("unknown_key", "the header has no kid (expected the id of a pinned command-signing key)");

    let payload: Record<string, unknown>;
    const nowMs = this.#now();
    try {
      ({ payload } = await jwtVerify(envelope, this.#jwks, {
        algorithms: [...COMMAND_ALGORITHMS],
        typ: COMMAND_TYP,
        audience: this.#instance,
        requiredClaims: REQUIRED,
        clockTolerance: this.#skew,
        // With maxTokenAge jose also refuses an iat in the future (beyond the tolerance).
        maxTokenAge: this.#maxLifetime,
        currentDate: new Date(nowMs),
      }));
    } catch (err) {
      const [code, reason] = joseRefusal(err, header.kid, this.#instance);
      return refuse(code, reason);
    }

    const parsed = claims.safeParse(payload);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      return refuse("claim_invalid", `claim ${issue.path.join(".")}: ${issue.message}`);
    }
    const c = parsed.data;
    // jose accepts an aud list that contains us; a command for several connectors could run on each.
    if (c.aud !== this.#instance) return refuse("wrong_audience", `aud is ${JSON.stringify(c.aud)} (expected ${JSON.stringify(this.#instance)})`);
    if (c.exp - c.iat > this.#maxLifetime) return refuse("lifetime_too_long", `exp is ${c.exp - c.iat} s after iat (expected at most ${this.#maxLifetime} s)`);
    if (!isAction(c.action)) return refuse("unknown_action", `action ${JSON.stringify(c.action.slice(0, 60))} is not one this connector knows`);
    const action = c.action;
    if (!scopeAllows(c.scope, action)) return refuse("scope_denied", `scope "${c.scope}" does not allow ${action} (expected ${scopeOf(action)})`);
    const args = ACTION_ARGS[action].safeParse(c.args);
    if (!args.success) {
      const issue = args.error.issues[0]!;
      return refuse("args_invalid", `args${issue.path.length > 0 ? `.${issue.path.join(".")}` : ""}: ${issue.message}`);
    }
    return {
      ok: true,
      command: { jti: c.jti, clientId: c.client_id, ...(c.sub === undefined ? {} : { sub: c.sub }), scope: c.scope, action, args: args.data as ActionArgs[Action], iat: c.iat, exp: c.exp },
    };
  }
}

function joseRefusal(err: unknown, kid: string, instance: string): [RefusalCode, string] {
  const e = err as { code?: string; claim?: string; reason?: string; message?: string };
  switch (e.code) {
    case "ERR_JWKS_NO_MATCHING_KEY":
      return ["unknown_key", `no pinned command-signing key has kid ${JSON.stringify(kid)}`];
    case "ERR_JWS_SIGNATURE_VERIFICATION_FAILED":
      return ["bad_signature", `the signature does not verify with the pinned key ${JSON.stringify(kid)}`];
    case "ERR_JOSE_ALG_NOT_ALLOWED":
      return ["alg_not_allowed", `the algorithm is not allowed (expected ${COMMAND_ALGORITHMS.join(" or ")})`];
    case "ERR_JWT_EXPIRED":
      return ["expired", e.claim === "iat" ? "iat is too far in the past" : "exp has passed"];
    case "ERR_JWT_CLAIM_VALIDATION_FAILED":
      if (e.reason === "missing") return ["claim_missing", `claim ${e.claim} is missing`];
      if (e.claim === "aud") return ["wrong_audience", `aud does not name this connector (expected ${JSON.stringify(instance)})`];
      if (e.claim === "iat" || e.claim === "nbf") return ["not_yet_valid", `${e.claim} lies in the future`];
      if (e.claim === "typ") return ["wrong_type", `typ is not ${COMMAND_TYP}`];
      return ["claim_invalid", e.message ?? "a claim is invalid"];
    case "ERR_JWT_INVALID":
      return ["claim_invalid", e.message ?? "the claims are invalid"];
    default:
      return ["malformed", e.message ?? String(err)];
  }
}

/** The claims as the envelope states them, before any check; for the audit log only. */
function peek(envelope: string): Claimed {
  try {
    const p = decodeJwt(envelope);
    const s = (v: unknown) => (typeof v === "string" ? v.slice(0, 256) : undefined);
    const out: Claimed = {};
    for (const [k, v] of [["jti", p.jti], ["clientId", p.client_id], ["sub", p.sub], ["action", p.action]] as const) {
      const value = s(v);
      if (value !== undefined) out[k] = value;
    }
    return out;
  } catch {
    return {};
  }
}

const publicKey = z.union([
  z.looseObject({ kty: z.literal("EC"), crv: z.literal("P-256"), x: z.string(), y: z.string(), kid: z.string().min(1), alg: z.literal("ES256").optional() }),
  z.looseObject({ kty: z.literal("OKP"), crv: z.literal("Ed25519"), x: z.string(), kid: z.string().min(1), alg: z.literal("EdDSA").optional() }),
]);

/**
 * The JWK set of the cloud's command-signing public keys, from `file`. Refused: a private key
 * (a "d" member: it would be a secret in a config file), a key type other than P-256 or Ed25519,
 * a key without kid, or a kid used twice.
 */
export async function loadCommandKeys(file: string): Promise<JSONWebKeySet> {
  const fail = (problem: string) => new KerfError("COMMAND_KEYS", `command-signing keys ${file}: ${problem}`, { details: [problem] });
  let data: unknown;
  try {
    data = JSON.parse(await readFile(file, "utf8"));
  } catch (err) {
    throw fail(err instanceof SyntaxError ? `not JSON (${err.message})` : `cannot read: ${(err as Error).message}`);
  }
  const keys = (data as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys) || keys.length === 0) throw fail('expected a JWK set: { "keys": [ ... ] } with at least one key');
  const kids = new Set<string>();
  keys.forEach((key: unknown, i) => {
    if (key !== null && typeof key === "object" && "d" in key) throw fail(`keys[${i}] is a private key (expected public keys only: remove "d")`);
    const parsed = publicKey.safeParse(key);
    if (!parsed.success) throw fail(`keys[${i}] is not a usable public key (expected kty EC with crv P-256, or kty OKP with crv Ed25519, each with a kid)`);
    if (kids.has(parsed.data.kid)) throw fail(`keys[${i}] repeats kid ${JSON.stringify(parsed.data.kid)} (expected each kid once)`);
    kids.add(parsed.data.kid);
  });
  return { keys: keys as JWK[] };
}
