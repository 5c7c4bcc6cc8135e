/**
 * The devcloud's command key: it turns a command that passed the partner API's checks (token,
 * scope, grant) into an envelope the connector verifies (src/commands/envelope.ts). The key pair
 * is made in this process; its public half is the JWK set a connector pins (commands.keys).
 */
import { generateKeyPairSync, randomBytes, randomUUID } from "node:crypto";
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
}

export interface CommandSigner {
  /** The public keys, for the connector's commands.keys file. */
  jwks: JSONWebKeySet;
  /** A signed envelope and its command id. */
  sign(command: CommandToSign): Promise<{ jti: string; envelope: string; exp: number }>;
}

export function createCommandSigner(options: { alg?: "ES256" | "EdDSA"; ttlSeconds?: number; now?: () => number } = {}): CommandSigner {
  const alg = options.alg ?? "ES256";
  const ttl = options.ttlSeconds ?? 60;
  const now = options.now ?? Date.now;
  const { privateKey, publicKey } = alg === "ES256" ? generateKeyPairSync("ec", { namedCurve: "P-256" }) : generateKeyPairSync("ed25519");
  const kid = `cmd-${randomBytes(6).toString("hex")}`;
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
        .setExpirationTime(iat + ttl)
        .sign(privateKey);
      return { jti, envelope, exp: iat + ttl };
    },
  };
}
