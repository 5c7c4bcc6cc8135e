/**
 * A partner app managing a Kerf connector through the cloud (issue 16), as a partner developer
 * would write it: an OAuth2 client-credentials token from the cloud's authorization server
 * (openid-client), then the partner API: list the connectors this app was granted, read a
 * machine's latest values, change the connector's mapping and wait for the result.
 *
 * Run against `kerf devcloud` (see README "Remote management"):
 *   KERF_ISSUER=https://127.0.0.1:PORT          the authorization server (kerf devcloud prints it)
 *   KERF_PARTNER_API=https://127.0.0.1:PORT     the partner API (printed too)
 *   KERF_CA_FILE=.kerf/devcloud/ca.pem          the devcloud's CA (a real cloud has a public certificate)
 *   KERF_CLIENT_ID=partner-app                  this app's client_id
 *   KERF_CLIENT_SECRET_FILE=secret.txt          its client secret, from a file (never on the command line)
 *   npx node examples/partner-app.ts
 */
import { readFileSync } from "node:fs";
import * as oauth from "openid-client";
import { Agent, fetch } from "undici";
import { parse, stringify } from "yaml";

export interface PartnerAppOptions {
  issuer: string;
  api: string;
  clientId: string;
  clientSecret: string;
  /** PEM of the CA that issued the cloud's server certificate; omit for a publicly trusted one. */
  caPem?: string;
  /** The data point to add to the mapping of the first machine. */
  add: { key: string; node: string };
  log?: (line: string) => void;
}

type Json = Record<string, unknown>;

export async function runPartnerApp(o: PartnerAppOptions) {
  const log = o.log ?? ((line: string) => console.log(line));
  const dispatcher = o.caPem ? new Agent({ connect: { ca: o.caPem } }) : undefined;
  const customFetch: oauth.CustomFetch = (url, options) => fetch(url, { ...(options as object), ...(dispatcher ? { dispatcher } : {}) } as Parameters<typeof fetch>[1]) as unknown as Promise<Response>;
  try {
    // 1. A token for the partner API (the resource), with the scopes this app needs.
    const config = await oauth.discovery(new URL(o.issuer), o.clientId, undefined, oauth.ClientSecretBasic(o.clientSecret), { [oauth.customFetch]: customFetch });
    config[oauth.customFetch] = customFetch;
    const { access_token: token } = await oauth.clientCredentialsGrant(config, { scope: "machines:read connector:manage", resource: `${o.api}/partner` });

    const api = async (method: "GET" | "POST", path: string, body?: unknown): Promise<Json> => {
      const res = await customFetch(`${o.api}/partner/v1${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      } as never);
      const answer = (await res.json()) as Json;
      if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${answer.error}: ${answer.error_description ?? ""}`);
      return answer;
    };
    /** Sends a command and polls its state until it is final (the cloud times it out at its deadline). */
    const command = async (connector: string, action: string, args: unknown): Promise<Json> => {
      const { jti } = await api("POST", `/connectors/${encodeURIComponent(connector)}/commands`, { action, args, timeoutSeconds: 60 });
      for (;;) {
        const state = await api("GET", `/commands/${jti}`);
        if (!["queued", "delivered", "running"].includes(String(state.state))) return state;
        await new Promise((r) => setTimeout(r, 250));
      }
    };

    // 2. The connectors the machine owner granted this app.
    const { connectors } = (await api("GET", "/connectors")) as { connectors: { id: string; online: boolean }[] };
    log(`connectors: ${connectors.map((c) => `${c.id} (${c.online ? "online" : "offline"})`).join(", ") || "none granted"}`);
    const connector = connectors.find((c) => c.online)?.id;
    if (!connector) throw new Error("no granted connector is online");

    // 3. Its mapping, and the latest values of its first machine.
    const current = await command(connector, "mapping.get", {});
    if (current.state !== "succeeded") throw new Error(`mapping.get: ${current.state}`);
    const text = ((current.result as Json).data as { mapping: string }).mapping;
    const mapping = parse(text) as { machines: Record<string, { groups: { nodes?: { key: string; node: string }[] }[] }> };
    const machine = Object.keys(mapping.machines)[0]!;
    const { values } = await api("GET", `/connectors/${encodeURIComponent(connector)}/machines/${encodeURIComponent(machine)}/latest`);
    log(`latest values of ${machine}: ${Object.keys(values as Json).length} data points`);

    // 4. A mapping change: one more data point; the connector validates it and applies it as a diff.
    const group = mapping.machines[machine]!.groups[0]!;
    group.nodes = [...(group.nodes ?? []).filter((n) => n.key !== o.add.key), o.add];
    const result = await command(connector, "mapping.set", { mapping: stringify(mapping) });
    log(`mapping.set on ${connector}: ${result.state}${result.result && (result.result as Json).reason ? ` (${(result.result as Json).reason})` : ""}`);
    return { connector, machine, latest: values as Json, mappingSet: result };
  } finally {
    await dispatcher?.close();
  }
}

if (import.meta.main) {
  const env = (name: string) => process.env[name] ?? (console.error(`set ${name}`), process.exit(2));
  const result = await runPartnerApp({
    issuer: env("KERF_ISSUER"),
    api: env("KERF_PARTNER_API"),
    clientId: env("KERF_CLIENT_ID"),
    clientSecret: readFileSync(env("KERF_CLIENT_SECRET_FILE"), "utf8").trim(),
    ...(process.env.KERF_CA_FILE ? { caPem: readFileSync(process.env.KERF_CA_FILE, "utf8") } : {}),
    add: { key: process.env.KERF_ADD_KEY ?? "feed.setpoint", node: process.env.KERF_ADD_NODE ?? "nsu=urn:kerf:simulator;s=Feed.Setpoint" },
  });
  process.exit(result.mappingSet.state === "succeeded" ? 0 : 1);
}
