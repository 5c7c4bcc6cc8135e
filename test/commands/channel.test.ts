import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { Agent } from "undici";
import { afterEach, beforeEach, expect, it } from "vitest";
import { CommandChannel, type CommandItem } from "../../src/commands/channel.ts";
import { Secret } from "../../src/config/secrets.ts";
import { silentLogger } from "../../src/log.ts";

// A real HTTP server plays the cloud's command endpoints; the channel runs over a real undici
// Agent. (TLS and pins are the transport's business, tested with it; the end-to-end test through
// the devcloud's mTLS listener comes with the wiring.)

interface Cloud {
  port: number;
  /** Queues a command: an open poll answers with it at once. */
  send(item: CommandItem): void;
  /** Authorization header of every request, in order. */
  auth: string[];
  results: { jti: string; body: unknown }[];
  /** Answers 401 to the next N requests. */
  unauthorized: number;
  /** The next poll gets this raw body with status 200. */
  junk: string | null;
  polls: number;
  close(): Promise<void>;
}

async function startCloud(port = 0): Promise<Cloud> {
  const waiting = new Set<() => void>();
  const sockets = new Set<Socket>();
  const queue: CommandItem[] = [];
  const cloud: Cloud = {
    port: 0,
    send(item) {
      queue.push(item);
      for (const answer of [...waiting]) answer();
    },
    auth: [],
    results: [],
    unauthorized: 0,
    junk: null,
    polls: 0,
    close: async () => undefined,
  };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    cloud.auth.push(req.headers.authorization ?? "");
    if (cloud.unauthorized > 0) {
      cloud.unauthorized--;
      res.writeHead(401).end();
      return;
    }
    const url = new URL(req.url ?? "/", "http://cloud");
    const result = /^\/v1\/commands\/([^/]+)\/result$/.exec(url.pathname);
    if (result && req.method === "POST") {
      let body = "";
      req.on("data", (d: Buffer) => (body += d.toString()));
      req.on("end", () => {
        cloud.results.push({ jti: decodeURIComponent(result[1]!), body: JSON.parse(body) });
        res.writeHead(204).end();
      });
      return;
    }
    if (url.pathname !== "/v1/commands" || req.method !== "GET") {
      res.writeHead(404).end();
      return;
    }
    cloud.polls++;
    if (cloud.junk !== null) {
      res.writeHead(200, { "content-type": "application/json" }).end(cloud.junk);
      cloud.junk = null;
      return;
    }
    const answer = () => {
      waiting.delete(answer);
      clearTimeout(timer);
      if (res.writableEnded) return;
      const commands = queue.splice(0);
      if (commands.length === 0) res.writeHead(204).end();
      else res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ commands }));
    };
    const timer = setTimeout(answer, Number(url.searchParams.get("wait")) * 1000);
    if (queue.length > 0) answer();
    else waiting.add(answer);
  });
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  cloud.port = (server.address() as AddressInfo).port;
  cloud.close = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
  return cloud;
}

async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

let cloud: Cloud;
let agent: Agent;
let channel: CommandChannel | null;
let handled: CommandItem[];
let tokenNo: number;
const tokens = {
  token: async () => new Secret(`t${tokenNo}`),
  renew: async () => new Secret(`t${++tokenNo}`),
};

function open(waitSeconds = 20): CommandChannel {
  channel = new CommandChannel({
    url: `http://127.0.0.1:${cloud.port}/`,
    transport: agent,
    tokens,
    waitSeconds,
    retry: { initialDelayMs: 20, maxDelayMs: 100 },
    handle: async (item) => {
      handled.push(item);
    },
    logger: silentLogger(),
  });
  channel.start();
  return channel;
}

beforeEach(async () => {
  cloud = await startCloud();
  agent = new Agent();
  channel = null;
  handled = [];
  tokenNo = 1;
});
afterEach(async () => {
  await channel?.stop();
  await cloud.close();
  await agent.close();
});

it("a command queued while a poll is open arrives at once, with the bearer token; an empty wait answers 204 and polling goes on", async () => {
  open(1);
  await until(() => cloud.polls >= 2, "a second poll after a 204");
  cloud.send({ jti: "c-1", envelope: "e.n.v" });
  await until(() => handled.length === 1, "the command");
  expect(handled).toEqual([{ jti: "c-1", envelope: "e.n.v" }]);
  expect(cloud.auth.every((a) => a === "Bearer t1")).toBe(true);
  expect(channel!.health()).toMatchObject({ consecutiveFailures: 0, received: 1 });
});

it("hands on every item of an answer, a malformed one too (for the gate to refuse and audit), not only the good ones", async () => {
  cloud.junk = JSON.stringify({ commands: [{ jti: "c-9", envelope: "g.o.od" }, { jti: "x".repeat(129), envelope: "b.a.d" }, { jti: "c-10" }] });
  open();
  await until(() => handled.length === 3, "the three items");
  expect(handled).toEqual([
    { jti: "c-9", envelope: "g.o.od" },
    { jti: "", envelope: "b.a.d" },
    { jti: "c-10", envelope: "" },
  ]);
});

it("a 401 gets one new token and one retry", async () => {
  cloud.unauthorized = 1;
  open();
  cloud.send({ jti: "c-2", envelope: "x.y.z" });
  await until(() => handled.length === 1, "the command after the 401");
  expect(cloud.auth.slice(0, 2)).toEqual(["Bearer t1", "Bearer t2"]);
});

it("survives a cloud restart and a malformed answer: the next command still arrives", async () => {
  cloud.junk = '{"commands": "nope"}';
  open();
  await until(() => (channel!.health().lastErrorCode ?? "") === "COMMAND_POLL_MALFORMED", "the malformed answer");
  await until(() => cloud.polls >= 2, "polling again");
  const port = cloud.port;
  await cloud.close();
  // The malformed answer, the poll cut by the restart, and at least one refused connection.
  await until(() => channel!.health().consecutiveFailures >= 3, "failed polls while the cloud is down");
  expect(channel!.health().lastErrorCode).toMatch(/^UPLINK_/);
  cloud = await startCloud(port);
  cloud.send({ jti: "c-3", envelope: "a.b.c" });
  await until(() => handled.length === 1, "the command after the restart");
  expect(handled[0]!.jti).toBe("c-3");
});

it("posts a result to /v1/commands/<jti>/result, and stop() ends an open poll", async () => {
  open();
  await channel!.postResult("c-4", { state: "failed", code: "BadNotWritable", reason: "the server refused" });
  expect(cloud.results).toEqual([{ jti: "c-4", body: { state: "failed", code: "BadNotWritable", reason: "the server refused" } }]);
  await until(() => cloud.polls >= 1, "an open poll");
  await channel!.stop();
  channel = null;
});
