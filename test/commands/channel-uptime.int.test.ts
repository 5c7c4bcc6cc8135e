/**
 * Long uptime (issue 16): the command channel over the real uplink pieces (pinned mTLS transport
 * through a CONNECT proxy, certificate-bound tokens) against the devcloud, through idle polls, a
 * proxy that cuts its tunnels, token renewal, certificate rotation, a lost poll answer and a cloud restart. After
 * each, a command sent arrives on the poll in flight or the next one the cloud sees.
 */
import { X509Certificate } from "node:crypto";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { CommandChannel } from "../../src/commands/channel.ts";
import { startDevCloud, type DevCloud } from "../../src/devcloud/server.ts";
import { silentLogger } from "../../src/log.ts";
import { TokenClient } from "../../src/uplink/tokens.ts";
import { Transport } from "../../src/uplink/transport.ts";
import { startConnectProxy, type ConnectProxy } from "../helpers/connect-proxy.ts";
import { waitFor } from "../helpers/env.ts";
import { clientIdentity, runCleanups, tempDir, type Cleanups } from "../uplink/helpers.ts";

const INSTANCE = "line-1";
const cleanups: Cleanups = [];
let dir: string;
let cloud: DevCloud;
let proxy: ConnectProxy;
let transport: Transport;
let tokens: TokenClient;
const received: string[] = [];
let sent = 0;

beforeAll(async () => {
  const tmp = await tempDir("kerf-uptime-");
  dir = tmp.dir;
  cleanups.push(tmp.remove);
  cloud = await startDevCloud({ dir: path.join(dir, "cloud"), logger: silentLogger(), tokenTtlSeconds: 3 });
  cleanups.push(() => cloud.stop());
  proxy = await startConnectProxy();
  cleanups.push(() => proxy.close());
  const identity = await clientIdentity(cloud.ca, INSTANCE);
  transport = new Transport({ ...identity, caPem: cloud.ca.certPem, pins: [cloud.pin], logger: silentLogger(), connections: 3, proxy: { url: proxy.url, noProxy: "", source: "config" } });
  cleanups.push(() => transport.close());
  tokens = new TokenClient({ issuer: cloud.auth.issuer, method: "tls_client_auth", clientId: INSTANCE, scope: "ingest", resource: cloud.url, transport, keyPem: identity.keyPem, logger: silentLogger(), retry: { initialDelayMs: 50, maxDelayMs: 200 } });
  cleanups.push(() => tokens.close());
  // as the commands part does: "running" as soon as a command is taken, then its result
  const channel: CommandChannel = new CommandChannel({
    url: cloud.url,
    transport,
    tokens,
    waitSeconds: 1,
    retry: { initialDelayMs: 100, maxDelayMs: 500 },
    logger: silentLogger(),
    handle: async (item) => {
      received.push(item.jti);
      await channel.postResult(item.jti, { state: "running" });
      await channel.postResult(item.jti, { state: "succeeded" });
    },
  });
  channel.start();
  cleanups.push(() => channel.stop());
  await waitFor("the first poll", () => cloud.commands.seen(INSTANCE).polls > 0);
}, 30_000);

afterAll(() => runCleanups(cleanups));

/** Sends a command and checks that it arrives, carried by the poll in flight or the next one. */
async function arrives(): Promise<void> {
  const jti = `cmd-${++sent}`;
  const pollsBefore = cloud.commands.seen(INSTANCE).polls;
  cloud.commands.enqueue({ jti, connector: INSTANCE, clientId: "test", action: "status", envelope: "e30.e30.sig", deadline: new Date(Date.now() + 60_000).toISOString(), exp: Math.floor(Date.now() / 1000) + 60 });
  await waitFor(`command ${jti}`, () => received.includes(jti), 30_000);
  expect(cloud.commands.get(jti)?.deliveredOnPoll).toBeLessThanOrEqual(pollsBefore + 1);
  await waitFor(`the result of ${jti}`, () => cloud.commands.get(jti)?.state === "succeeded");
  expect(received.filter((r) => r === jti)).toHaveLength(1);
}

it("after idle polls", async () => {
  const polls = cloud.commands.seen(INSTANCE).polls;
  await waitFor("three idle polls", () => cloud.commands.seen(INSTANCE).polls >= polls + 3);
  await arrives();
});

it("after the proxy cut its tunnels", async () => {
  const connects = proxy.connects.length;
  proxy.cut();
  await waitFor("a new tunnel", () => proxy.connects.length > connects);
  await arrives();
});

it("after the access token was renewed", async () => {
  const renewals = tokens.health().renewals;
  await waitFor("a token renewal", () => tokens.health().renewals > renewals + 1);
  await arrives();
});

it("after the client certificate was rotated", async () => {
  const next = await clientIdentity(cloud.ca, INSTANCE);
  transport.rotate(next);
  await arrives();
  const serial = new X509Certificate(next.certPem).serialNumber;
  expect(cloud.tokens.acceptedBySerial.get(serial)).toBeGreaterThan(0);
});

it("after a poll answer carrying the command was lost: offered once more, taken once", async () => {
  const jti = `cmd-${++sent}`;
  cloud.commands.loseNextAnswer = true;
  cloud.commands.enqueue({ jti, connector: INSTANCE, clientId: "test", action: "status", envelope: "e30.e30.sig", deadline: new Date(Date.now() + 60_000).toISOString(), exp: Math.floor(Date.now() / 1000) + 60 });
  await waitFor(`command ${jti}`, () => received.includes(jti), 30_000);
  expect(cloud.commands.loseNextAnswer).toBe(false);
  expect(cloud.commands.get(jti)?.redelivered).toBe(true);
  expect(received.filter((r) => r === jti)).toHaveLength(1);
});

it("after a cloud restart", async () => {
  const { port } = cloud;
  const authPort = cloud.auth.port;
  await cloud.stop();
  cloud = await startDevCloud({ dir: path.join(dir, "cloud"), logger: silentLogger(), tokenTtlSeconds: 3, port, authPort });
  cleanups.push(() => cloud.stop());
  await arrives();
});
