/**
 * The devcloud's command key: it turns a command that passed the partner API's checks (token,
 * scope, grant) into an envelope the connector verifies (src/commands/envelope.ts). The key pair
 * is made in this process; its public half is the JWK set a connector pins (commands.keys).
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { writeFileAtomic } from "../certs/files.ts";
import { SignJWT, type JSONWebKeySet, type JWK } from "jose";
import type { Action, ActionArgs } from "../commands/actions.ts";
import { COMMAND_TYP } from "../commands/envelope.ts";

export interface CommandToSign<A extends Action = Action> {
  /** The target connector's instance id. */
  connector: string;
  /** The partner app. */
  clientId: string;
  /** The user the app acts for, if any. */
  sub?: string;
  /** The scopes of the app's token that the grant covers, space-separated. */
  scope: string;
  action: A;
  args: ActionArgs[A];
  /** Lifetime of this envelope; default the signer's. */
  ttlSeconds?: number;
}

/**
 * The devcloud's command signer, its private key kept in `dir` (command-key.pem, 0600) and its
 * public JWK set written beside it (command-keys.json) for connectors to pin (commands.keys).
 */
export function openCommandSigner(dir: string): CommandSigner & { keysFile: string } {
  const keyFile = path.join(dir, "command-key.pem");
  let privateKeyPem = existsSync(keyFile) ? readFileSync(keyFile, "utf8") : undefined;
  if (!privateKeyPem) {
    privateKeyPem = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "pkcs8", format: "pem" }) as string;
    writeFileAtomic(keyFile, privateKeyPem, 0o600);
  }
  const signer = createCommandSigner({ privateKeyPem });
  const keysFile = path.join(dir, "command-keys.json");
  writeFileAtomic(keysFile, JSON.stringify(signer.jwks, null, 2) + "\n", 0o644);
  return { ...signer, keysFile };
}

export interface CommandSigner {
  /** The public keys, for the connector's commands.keys file. */
  jwks: JSONWebKeySet;
  /** A signed envelope and its command id. */
  sign(command: CommandToSign): Promise<{ jti: string; envelope: string; exp: number }>;
}

export function createCommandSigner(options: { alg?: "ES256" | "EdDSA"; ttlSeconds?: number; now?: () => number; privateKeyPem?: string } = {}): CommandSigner {
  const alg = options.alg ?? "ES256";
  const ttl = options.ttlSeconds ?? 60;
  const now = options.now ?? Date.now;
  const { privateKey, publicKey } = options.privateKeyPem
    ? { privateKey: createPrivateKey(options.privateKeyPem), publicKey: createPublicKey(options.privateKeyPem) }
    : alg === "ES256"
      ? generateKeyPairSync("ec", { namedCurve: "P-256" })
      : generateKeyPairSync("ed25519");
  // a kept key keeps its kid, so a connector's pinned key set stays valid across cloud restarts
  const kid = `cmd-${createHash("sha256").update(publicKey.export({ type: "spki", format: "der" })).digest("hex").slice(0, 12)}`;
  const jwks: JSONWebKeySet = { keys: [{ ...publicKey.export({ format: "jwk" }), kid, alg, use: "sig" } as JWK] };
  return {
    jwks,
    async sign(c) {
      const jti = randomUUID();
      const iat = Math.floor(now() / 1000);
      const claims = { client_id: c.clientId, scope: c.scope, action: c.action, args: c.args, ...(c.sub === undefined ? {} : { sub: c.sub }) };
      const envelope = await new SignJWT(claims)
        .setProtectedHeader({ alg, kid, typ: COMMAND_TYP })
        .setJti(jti)
        .setAudience(c.connector)
        .setIssuedAt(iat)
        .setExpirationTime(iat + (c.ttlSeconds ?? ttl))
        .sign(privateKey);
      return { jti, envelope, exp: iat + (c.ttlSeconds ?? ttl) };
    },
  };
}
