import { readFileSync } from "node:fs";
import { Agent, fetch } from "undici";
import type { DevCloud } from "../../src/devcloud/index.ts";
import { partnerClients } from "../../src/devcloud/grants.ts";

/** A partner app talking to the devcloud as a real one would: token endpoint, then the partner API (trusting the devcloud CA). */
export function partnerClient(cloud: DevCloud) {
  const dispatcher = new Agent({ connect: { ca: readFileSync(cloud.ca.certFile, "utf8") } });
  return {
    /** A client-credentials token for `clientId` (its secret from partners.json unless given). */
    async token(clientId: string, scope: string, secret = partnerClients(cloud.dir).get(clientId)?.secret ?? ""): Promise<string> {
      const res = await fetch(`${cloud.auth.issuer}/token`, {
        dispatcher,
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", authorization: `Basic ${Buffer.from(`${clientId}:${secret}`).toString("base64")}` },
        body: new URLSearchParams({ grant_type: "client_credentials", scope, resource: cloud.partner.audience }).toString(),
      });
      const body = (await res.json()) as { access_token?: string };
      if (!body.access_token) throw new Error(`token request for ${clientId} refused: ${res.status} ${JSON.stringify(body)}`);
      return body.access_token;
    },
    async call(token: string | null, method: "GET" | "POST", path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
      const res = await fetch(`${cloud.partner.url}/partner/v1${path}`, {
        dispatcher,
        method,
        headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body === undefined ? {} : { "content-type": "application/json" }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    },
    close: () => dispatcher.close(),
  };
}
