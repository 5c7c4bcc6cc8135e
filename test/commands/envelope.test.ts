import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { SignJWT, type JWK } from "jose";
import { afterAll, describe, expect, it } from "vitest";
import { isKerfError } from "../../src/errors.ts";
import { COMMAND_TYP, EnvelopeVerifier, loadCommandKeys, type RefusalCode } from "../../src/commands/envelope.ts";

// Real keys and real signatures: only the clock is set, so that expiry is tested without waiting.
const NOW = 1_800_000_000;
const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
const ed = generateKeyPairSync("ed25519");
const foreign = generateKeyPairSync("ec", { namedCurve: "P-256" });
const pub = (k: KeyObject, kid: string) => ({ ...k.export({ format: "jwk" }), kid }) as JWK;
const keys = { keys: [pub(ec.publicKey, "cmd-1"), pub(ed.publicKey, "cmd-2")] };
const verifier = new EnvelopeVerifier({ keys, instance: "press-7", now: () => NOW * 1000 });

const claims = { jti: "c-1", aud: "press-7", client_id: "app-a", sub: "alice", scope: "machines:read", action: "read", args: { machine: "m1", nodes: ["ns=2;s=Speed"] }, iat: NOW, exp: NOW + 60 };

async function sign(
  body: Record<string, unknown> = claims,
  opts: { key?: KeyObject; alg?: string; kid?: string | undefined; typ?: string } = {},
): Promise<string> {
  const header: Record<string, unknown> = { alg: opts.alg ?? "ES256", typ: opts.typ ?? COMMAND_TYP };
  if (!("kid" in opts) || opts.kid !== undefined) header.kid = opts.kid ?? "cmd-1";
  return new SignJWT(body).setProtectedHeader(header as { alg: string }).sign(opts.key ?? ec.privateKey);
}

async function refusal(envelope: string): Promise<RefusalCode> {
  const v = await verifier.verify(envelope);
  if (v.ok) throw new Error("accepted, expected a refusal");
  expect(v.refusal.reason.length).toBeGreaterThan(0);
  return v.refusal.code;
}

describe("a command envelope", () => {
  it("signed by a pinned key (ES256 or EdDSA), for this connector, in time and in scope, is accepted with its claims", async () => {
    const v = await verifier.verify(await sign());
    expect(v).toEqual({ ok: true, command: { jti: "c-1", clientId: "app-a", sub: "alice", scope: "machines:read", action: "read", args: { machine: "m1", nodes: ["ns=2;s=Speed"] }, iat: NOW, exp: NOW + 60 } });
    const ed25519 = await verifier.verify(await sign({ ...claims, sub: undefined, action: "status", args: {} }, { key: ed.privateKey, alg: "EdDSA", kid: "cmd-2" }));
    expect(ed25519.ok && ed25519.command.action).toBe("status");
  });

  it("signed by a key that is not pinned is refused, whether it names a pinned kid or another", async () => {
    expect(await refusal(await sign(claims, { key: foreign.privateKey }))).toBe("bad_signature");
    expect(await refusal(await sign(claims, { key: foreign.privateKey, kid: "attacker" }))).toBe("unknown_key");
    expect(await refusal(await sign(claims, { kid: undefined }))).toBe("unknown_key");
  });

  it("tampered after signing (the action changed) is refused", async () => {
    const [h, , s] = (await sign()).split(".");
    const body = Buffer.from(JSON.stringify({ ...claims, scope: "machines:write", action: "write", args: { machine: "m1", node: "ns=2;s=X", value: 1 } })).toString("base64url");
    expect(await refusal(`${h}.${body}.${s}`)).toBe("bad_signature");
  });

  it('with alg "none", or a symmetric alg, is refused', async () => {
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
    expect(await refusal(`${b64({ alg: "none", typ: COMMAND_TYP, kid: "cmd-1" })}.${b64(claims)}.`)).toBe("alg_not_allowed");
    const hs = await new SignJWT(claims).setProtectedHeader({ alg: "HS256", typ: COMMAND_TYP, kid: "cmd-1" }).sign(new TextEncoder().encode("k".repeat(32)));
    expect(await refusal(hs)).toBe("alg_not_allowed");
  });

  it("for another connector is refused, also when our id is one of several audiences", async () => {
    expect(await refusal(await sign({ ...claims, aud: "press-8" }))).toBe("wrong_audience");
    expect(await refusal(await sign({ ...claims, aud: ["press-7", "press-8"] }))).toBe("wrong_audience");
  });

  it("expired, not yet valid, or valid for too long is refused; the clock skew allowance holds", async () => {
    expect(await refusal(await sign({ ...claims, iat: NOW - 120, exp: NOW - 31 }))).toBe("expired");
    expect((await verifier.verify(await sign({ ...claims, iat: NOW - 120, exp: NOW - 29 }))).ok).toBe(true);
    expect(await refusal(await sign({ ...claims, iat: NOW + 31, exp: NOW + 90 }))).toBe("not_yet_valid");
    expect((await verifier.verify(await sign({ ...claims, iat: NOW + 29, exp: NOW + 90 }))).ok).toBe(true);
    expect(await refusal(await sign({ ...claims, exp: NOW + 3600 }))).toBe("lifetime_too_long");
  });

  it("without a required claim is refused, for each claim", async () => {
    for (const claim of ["jti", "aud", "client_id", "scope", "action", "args", "iat", "exp"]) {
      const body: Record<string, unknown> = { ...claims };
      delete body[claim];
      expect(await refusal(await sign(body)), claim).toBe("claim_missing");
    }
  });

  it("whose scope does not allow its action, or with an unknown action, or bad arguments, is refused", async () => {
    expect(await refusal(await sign({ ...claims, action: "write", args: { machine: "m1", node: "ns=2;s=X", value: 1 } }))).toBe("scope_denied");
    expect(await refusal(await sign({ ...claims, scope: "machines:write connector:update", action: "mapping.set", args: { mapping: "x" } }))).toBe("scope_denied");
    expect((await verifier.verify(await sign({ ...claims, scope: "connector:update machines:write", action: "write", args: { machine: "m1", node: "ns=2;s=X", value: 1 } }))).ok).toBe(true);
    expect(await refusal(await sign({ ...claims, action: "shell" }))).toBe("unknown_action");
    expect(await refusal(await sign({ ...claims, args: { machine: "m1", nodes: [], extra: 1 } }))).toBe("args_invalid");
  });

  it("of another JWT type (an access token signed by the same key) is refused", async () => {
    expect(await refusal(await sign(claims, { typ: "at+jwt" }))).toBe("wrong_type");
  });

  it("that is not a JWS at all is refused as malformed, and a refusal carries the claims it states for the audit", async () => {
    expect(await refusal("not.a.jws")).toBe("malformed");
    expect(await refusal("")).toBe("malformed");
    const v = await verifier.verify(await sign({ ...claims, aud: "press-8" }));
    expect(!v.ok && v.refusal.claimed).toEqual({ jti: "c-1", clientId: "app-a", sub: "alice", action: "read" });
  });
});

describe("the pinned command-signing keys file", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "kerf-cmdkeys-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, data: unknown) => {
    const p = path.join(dir, name);
    writeFileSync(p, typeof data === "string" ? data : JSON.stringify(data));
    return p;
  };
  const problem = async (p: string) => {
    const err = await loadCommandKeys(p).catch((e: unknown) => e);
    expect(isKerfError(err, "COMMAND_KEYS"), String(err)).toBe(true);
    return (err as Error).message;
  };

  it("loads a JWK set of public P-256 and Ed25519 keys", async () => {
    expect((await loadCommandKeys(file("ok.json", keys))).keys.map((k) => k.kid)).toEqual(["cmd-1", "cmd-2"]);
  });

  it("refuses a private key, a key without kid, a repeated kid, an RSA key, an empty set and non-JSON", async () => {
    expect(await problem(file("d.json", { keys: [{ ...ec.privateKey.export({ format: "jwk" }), kid: "x" }] }))).toMatch(/private key/);
    expect(await problem(file("nokid.json", { keys: [ec.publicKey.export({ format: "jwk" })] }))).toMatch(/keys\[0\]/);
    expect(await problem(file("dup.json", { keys: [pub(ec.publicKey, "a"), pub(ed.publicKey, "a")] }))).toMatch(/repeats kid/);
    const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey;
    expect(await problem(file("rsa.json", { keys: [pub(rsa, "r")] }))).toMatch(/not a usable public key/);
    expect(await problem(file("empty.json", { keys: [] }))).toMatch(/JWK set/);
    expect(await problem(file("text.json", "{"))).toMatch(/not JSON/);
    expect(await problem(path.join(dir, "missing.json"))).toMatch(/cannot read/);
  });
});
