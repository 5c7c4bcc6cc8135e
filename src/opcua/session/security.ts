import { createPrivateKey } from "node:crypto";
import { MessageSecurityMode, SecurityPolicy, UserTokenType, type EndpointDescription } from "node-opcua-client";
import { KerfError } from "../../errors.ts";
import type { SecurityModeName, SecurityPolicyName, UserSpec } from "../types.ts";

/**
 * Policy strength, strongest last. Asymmetric padding and hash decide it: RSA-PSS/SHA-256 over
 * OAEP-SHA1 with SHA-256 over OAEP-SHA256 with AES-128, and the two SHA-1 policies that OPC UA
 * has deprecated at the bottom. The server's own order (or securityLevel) does not count.
 */
export const POLICY_STRENGTH: readonly SecurityPolicyName[] = ["None", "Basic128Rsa15", "Basic256", "Aes128_Sha256_RsaOaep", "Basic256Sha256", "Aes256_Sha256_RsaPss"];
const MODE_STRENGTH: readonly SecurityModeName[] = ["None", "Sign", "SignAndEncrypt"];
export const DEPRECATED: ReadonlySet<SecurityPolicyName> = new Set(["Basic128Rsa15", "Basic256"]);

export function policyName(uri: string | null | undefined): SecurityPolicyName | undefined {
  const name = (uri ?? "").split("#").pop();
  return POLICY_STRENGTH.find((p) => p === name);
}

export function modeName(mode: MessageSecurityMode): SecurityModeName | undefined {
  return MODE_STRENGTH.find((m) => MessageSecurityMode[m] === mode);
}

/** `mode: best`: the strongest endpoint by mode, then by policy strength; deprecated policies only when allowed. */
export function selectBest(endpoints: readonly EndpointDescription[], allowDeprecated: boolean): { mode: SecurityModeName; policy: SecurityPolicyName } | undefined {
  let best: { mode: SecurityModeName; policy: SecurityPolicyName; rank: number } | undefined;
  for (const e of endpoints) {
    const mode = modeName(e.securityMode);
    const policy = policyName(e.securityPolicyUri);
    if (!mode || !policy || (DEPRECATED.has(policy) && !allowDeprecated)) continue;
    const rank = MODE_STRENGTH.indexOf(mode) * 10 + POLICY_STRENGTH.indexOf(policy);
    if (!best || rank > best.rank) best = { mode, policy, rank };
  }
  return best && { mode: best.mode, policy: best.policy };
}

/**
 * What the channel really uses must be exactly what was configured: a server, or a man in the
 * middle answering GetEndpoints, never talks the connector down to a weaker mode or policy.
 */
export function checkNoDowngrade(channel: { securityMode: MessageSecurityMode; securityPolicy: string }, mode: SecurityModeName, policy: SecurityPolicyName): string | undefined {
  const gotMode = modeName(channel.securityMode);
  const gotPolicy = policyName(channel.securityPolicy);
  if (gotMode !== mode || gotPolicy !== policy) {
    return `the channel came up as ${gotMode ?? "?"}/${gotPolicy ?? channel.securityPolicy} but ${mode}/${policy} is configured; refusing the weaker channel`;
  }
  return undefined;
}

/**
 * A password travels in clear only when neither the channel encrypts (SignAndEncrypt) nor the
 * server's UserName token policy encrypts the token with its certificate. Then we do not log in.
 */
export function checkUserToken(selected: EndpointDescription, user: UserSpec): string | undefined {
  const wanted = user.type === "anonymous" ? UserTokenType.Anonymous : user.type === "username" ? UserTokenType.UserName : UserTokenType.Certificate;
  const tokens = (selected.userIdentityTokens ?? []).filter((t) => t.tokenType === wanted);
  if (tokens.length === 0) return `the endpoint offers no ${UserTokenType[wanted]} user token; it offers ${(selected.userIdentityTokens ?? []).map((t) => UserTokenType[t.tokenType]).join(", ") || "none"}`;
  if (user.type !== "username" || selected.securityMode === MessageSecurityMode.SignAndEncrypt) return undefined;
  const channelPolicy = policyName(selected.securityPolicyUri);
  const encrypts = tokens.some((t) => {
    // An empty token policy means "the channel's policy" (OPC UA Part 4, 7.37).
    const p = t.securityPolicyUri ? policyName(t.securityPolicyUri) : channelPolicy;
    return p !== undefined && p !== "None";
  });
  return encrypts ? undefined : "the password would travel in clear: neither the channel (SignAndEncrypt) nor the server's UserName token policy encrypts it; refusing to log in";
}

/** node-opcua signs user tokens with RSA only; say so plainly instead of its "only RSA private keys are supported". */
export function checkUserCertificateKey(user: UserSpec): void {
  if (user.type !== "certificate") return;
  let type: string | undefined;
  try {
    type = createPrivateKey(user.privateKeyPem).asymmetricKeyType;
  } catch (err) {
    throw new KerfError("OPCUA_SECURITY", `the X.509 user private key cannot be read: ${(err as Error).message}`);
  }
  if (type !== "rsa") {
    throw new KerfError("OPCUA_SECURITY", `the X.509 user key is ${type?.toUpperCase() ?? "of unknown type"}; OPC UA user certificates need an RSA key here (node-opcua supports RSA only)`);
  }
}

export function securityPolicyEnum(policy: SecurityPolicyName): SecurityPolicy {
  return SecurityPolicy[policy];
}
