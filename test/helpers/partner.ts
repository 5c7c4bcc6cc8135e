import { readFileSync } from "node:fs";
import { Agent, fetch } from "undici";
import type { DevCloud } from "../../src/devcloud/index.ts";
import * as oauth from "openid-client";
import { partnerClients, USER_APP, USER_APP_REDIRECT } from "../../src/devcloud/grants.ts";

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
    /**
     * A user app's token for `user` by authorization code with PKCE (openid-client), logging in
     * headless through the devcloud's development login (login_hint), following the redirects.
     */
    async userToken(user: string, scope: string): Promise<string> {
      const customFetch: oauth.CustomFetch = (url, options) => fetch(url, { ...(options as object), dispatcher } as Parameters<typeof fetch>[1]) as unknown as Promise<Response>;
      const config = await oauth.discovery(new URL(cloud.auth.issuer), USER_APP, undefined, oauth.None(), { [oauth.customFetch]: customFetch });
      config[oauth.customFetch] = customFetch;
      const verifier = oauth.randomPKCECodeVerifier();
      const challenge = await oauth.calculatePKCECodeChallenge(verifier);
      let url = oauth.buildAuthorizationUrl(config, { redirect_uri: USER_APP_REDIRECT, scope, code_challenge: challenge, code_challenge_method: "S256", resource: cloud.partner.audience, login_hint: user }).href;
      const cookies = new Map<string, string>();
      for (let hop = 0; hop < 10 && !url.startsWith(USER_APP_REDIRECT); hop++) {
        const res = await fetch(url, { dispatcher, redirect: "manual", headers: { cookie: [...cookies].map(([k, v]) => `${k}=${v}`).join("; ") } });
        for (const c of res.headers.getSetCookie()) {
          const [pair] = c.split(";");
          const eq = pair!.indexOf("=");
          cookies.set(pair!.slice(0, eq), pair!.slice(eq + 1));
        }
        const location = res.headers.get("location");
        if (!location) throw new Error(`the login stopped at ${url}: ${res.status} ${await res.text()}`);
        url = new URL(location, url).href;
      }
      const tokens = await oauth.authorizationCodeGrant(config, new URL(url), { pkceCodeVerifier: verifier }, { resource: cloud.partner.audience });
      return tokens.access_token;
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
