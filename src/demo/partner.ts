/**
 * `kerf demo --scenario partner` (issue 16): the example partner app against the demo, then two
 * commands that must be refused: a write the connector's local policy forbids (refused at the
 * connector) and a command from an app the owner granted nothing (refused at the cloud, 403).
 */
import { readFileSync } from "node:fs";
import { Agent, fetch } from "undici";
import { addServiceApp, partnerClients, SERVICE_APP } from "../devcloud/grants.ts";
import { SIM_NODES } from "../simulator/nodes.ts";
import { DEMO_INSTANCE, DEMO_MACHINE, type Demo } from "./setup.ts";

/** Runs the scenario; returns how many commands the cloud refused (the connector counts its own). */
export async function partnerScenario(demo: Demo, note: (line: string) => void): Promise<number> {
  const cloud = demo.devcloud;
  const caPem = readFileSync(cloud.ca.certFile, "utf8");
  const app = { issuer: cloud.auth.issuer, api: cloud.partner.url, caPem };
  // the connector's first poll: until then it is offline for the partner API
  for (let i = 0; i < 100 && cloud.commands.seen(DEMO_INSTANCE).lastPollAt === null; i++) await new Promise((r) => setTimeout(r, 100));
  const secret = partnerClients(cloud.dir).get(SERVICE_APP)!.secret!;
  // loaded here, not at the top: a release bundle carries no examples/, and kerf demo works without them
  const { runPartnerApp } = await import("../../examples/partner-app.ts");
  await runPartnerApp({ ...app, clientId: SERVICE_APP, clientSecret: secret, add: { key: "feed.setpoint", node: SIM_NODES.feedSetpoint }, log: (line) => note(`partner app: ${line}`) });

  const dispatcher = new Agent({ connect: { ca: caPem } });
  try {
    const token = async (clientId: string, clientSecret: string) => {
      const res = await fetch(`${cloud.auth.issuer}/token`, {
        dispatcher,
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", authorization: `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString("base64")}` },
        body: new URLSearchParams({ grant_type: "client_credentials", scope: "machines:read machines:write", resource: cloud.partner.audience }).toString(),
      });
      return ((await res.json()) as { access_token: string }).access_token;
    };
    const send = (t: string, body: unknown) =>
      fetch(`${cloud.partner.url}/partner/v1/connectors/${DEMO_INSTANCE}/commands`, { dispatcher, method: "POST", headers: { authorization: `Bearer ${t}`, "content-type": "application/json" }, body: JSON.stringify(body) });

    // a write to the measured feed rate: granted by the cloud, forbidden by the machine owner
    const forbidden = (await (await send(await token(SERVICE_APP, secret), { action: "itemWrite", args: { machine: DEMO_MACHINE, node: SIM_NODES.feedRate, value: 1 } })).json()) as { jti: string };
    let state = "queued";
    for (let i = 0; i < 200 && ["queued", "delivered", "running"].includes(state); i++) {
      await new Promise((r) => setTimeout(r, 100));
      const r = await fetch(`${cloud.partner.url}/partner/v1/commands/${forbidden.jti}`, { dispatcher, headers: { authorization: `Bearer ${await token(SERVICE_APP, secret)}` } });
      state = ((await r.json()) as { state: string }).state;
    }
    note(`a write the local policy forbids: ${state}`);

    // an app without a grant on this connector
    const other = addServiceApp(cloud.dir, "partner-without-grant");
    const refused = await send(await token("partner-without-grant", other), { action: "itemRead", args: { machine: DEMO_MACHINE, nodes: [SIM_NODES.feedRate] } });
    note(`a command from an app without a grant: ${refused.status} ${((await refused.json()) as { error: string }).error}`);
    return refused.status === 403 ? 1 : 0;
  } finally {
    await dispatcher.close();
  }
}
