/**
 * The machine owner's administrator's decisions in the devcloud (issue 16): which partner apps
 * exist (partners.json) and which app may use which scopes on which connector (grants.json).
 * Both are files in the devcloud's directory, read on every check, so `kerf devcloud --grant`
 * takes effect on a running devcloud at its next call (a revocation too).
 */
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { writeFileAtomic } from "../certs/files.ts";
import { SCOPES, type Scope } from "../commands/actions.ts";
import { KerfError } from "../errors.ts";
import type { PartnerClient } from "./auth.ts";

export interface Grant {
  clientId: string;
  connector: string;
  scopes: Scope[];
  grantedAt: string;
}

/** The two demo apps every devcloud has: a service app (client credentials) and a user app (code + PKCE). */
export const SERVICE_APP = "partner-app";
export const USER_APP = "partner-user";
export const USER_APP_REDIRECT = "http://127.0.0.1/callback";

export function grantsFile(dir: string): string {
  return path.join(dir, "grants.json");
}

export function partnersFile(dir: string): string {
  return path.join(dir, "partners.json");
}

export function readGrants(dir: string): Grant[] {
  const file = grantsFile(dir);
  return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as { grants: Grant[] }).grants : [];
}

/** Grants (or replaces) `scopes` to app `clientId` on `connector`; an empty list revokes. */
export function setGrant(dir: string, clientId: string, connector: string, scopes: readonly string[]): Grant | null {
  for (const s of scopes) {
    if (!(SCOPES as readonly string[]).includes(s)) throw new KerfError("DEV_COMMAND", `unknown scope '${s}' (expected some of ${SCOPES.join(", ")})`);
  }
  const grants = readGrants(dir).filter((g) => !(g.clientId === clientId && g.connector === connector));
  const grant = scopes.length > 0 ? { clientId, connector, scopes: [...new Set(scopes)] as Scope[], grantedAt: new Date().toISOString() } : null;
  if (grant) grants.push(grant);
  writeFileAtomic(grantsFile(dir), JSON.stringify({ grants }, null, 2) + "\n", 0o600);
  return grant;
}

export function findGrant(dir: string, clientId: string, connector: string): Grant | undefined {
  return readGrants(dir).find((g) => g.clientId === clientId && g.connector === connector);
}

/** The registered partner apps; the two demo apps are made on first use (the service app's secret is random). */
export function partnerClients(dir: string): Map<string, PartnerClient> {
  const file = partnersFile(dir);
  let list: PartnerClient[];
  if (existsSync(file)) list = (JSON.parse(readFileSync(file, "utf8")) as { clients: PartnerClient[] }).clients;
  else {
    list = [
      { clientId: SERVICE_APP, kind: "service", secret: randomBytes(24).toString("base64url") },
      { clientId: USER_APP, kind: "user", redirectUris: [USER_APP_REDIRECT] },
    ];
    writeFileAtomic(file, JSON.stringify({ clients: list }, null, 2) + "\n", 0o600);
  }
  return new Map(list.map((c) => [c.clientId, c]));
}

/** Registers one more service app (a test's app without a grant, say); returns its secret. */
export function addServiceApp(dir: string, clientId: string): string {
  const clients = [...partnerClients(dir).values()].filter((c) => c.clientId !== clientId);
  const secret = randomBytes(24).toString("base64url");
  clients.push({ clientId, kind: "service", secret });
  writeFileAtomic(partnersFile(dir), JSON.stringify({ clients }, null, 2) + "\n", 0o600);
  return secret;
}
