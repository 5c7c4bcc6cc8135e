import { OPCUAClient } from "node-opcua-client";
import { afterEach, describe, expect, it } from "vitest";
import { clientTransportLimits, TRANSPORT_LIMITS } from "../../src/opcua/session/limits.ts";
import { startRogueServer, type RogueAttack, type RogueServer } from "./raw-server.ts";

let rogue: RogueServer | undefined;
let client: OPCUAClient | undefined;
afterEach(async () => {
  await client?.disconnect().catch(() => undefined);
  await rogue?.close();
  client = rogue = undefined;
});

/**
 * How far this process's RSS rose above its level at the start, sampled every 10 ms until
 * `stop()`: transient peaks count, not just what is left after garbage collection.
 */
function watchRss() {
  const start = process.memoryUsage.rss();
  let peak = start;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 10);
  return {
    stop: () => {
      clearInterval(timer);
      return (Math.max(peak, process.memoryUsage.rss()) - start) / 1024 / 1024;
    },
  };
}

/**
 * Each attack offers up to 300 MB. With node-opcua's defaults, a client takes in about 64 MB
 * of endless chunks (measured here: RSS +47 MB) and all 300 MB of one huge chunk (+292 MB).
 * With our limits it gives up at the chunk header, or once one message passes 16 MiB, which
 * it holds as chunks until then: measured +0 to +25 MB, with 2 to 21 MB sent. 36 MB is one
 * such message twice over, leaving room for when the garbage collector runs.
 */
const OFFERED = 300 * 1024 * 1024;
const MAX_GROWTH_MB = 36;

describe("transport limits against a rogue server", () => {
  it("announces them in the Hello", () => {
    const { transportSettings, transportFactory } = clientTransportLimits();
    expect(transportSettings).toEqual({ receiveBufferSize: 512 * 1024, sendBufferSize: 512 * 1024, maxMessageSize: 16 * 1024 * 1024, maxChunkCount: 2048 });
    expect(transportFactory.create(transportSettings).getTransportSettings()).toEqual(transportSettings);
  });

  const cases: [RogueAttack, RegExp][] = [
    ["huge-ack", /BadTcpMessageTooLarge: .*maximum chunk size exceeded \(maxChunkSize=4096 current chunk size = 1073741824\)/],
    ["huge-chunk", /BadTcpMessageTooLarge: .*maximum chunk size exceeded \(maxChunkSize=524288 current chunk size = 2147483632\)/],
    ["endless-chunks", /BadTcpMessageTooLarge: max message size exceeded: 16777216/],
  ];
  for (const [attack, reason] of cases) {
    it(`${attack}: the client refuses with BadTcpMessageTooLarge, its memory stays flat and it does not crash`, async () => {
      rogue = await startRogueServer(attack, { capBytes: OFFERED });
      const aborts: string[] = [];
      client = OPCUAClient.create({ endpointMustExist: false, connectionStrategy: { maxRetry: 0 }, transportTimeout: 10_000, ...clientTransportLimits((r) => aborts.push(r)) });
      const rss = watchRss();
      await expect(client.connect(rogue.url)).rejects.toThrow();
      await Promise.race([rogue.done, new Promise((r) => setTimeout(r, 5_000))]);
      const growth = rss.stop();
      console.log(`${attack}: RSS +${growth.toFixed(1)} MB, rogue sent ${(rogue.sent / 1048576).toFixed(1)} MB`);

      expect(aborts).toHaveLength(1);
      expect(aborts[0]).toMatch(reason);
      expect(growth).toBeLessThan(MAX_GROWTH_MB);
      // the client hung up: the rogue could not push more than one message and the socket buffers
      expect(rogue.sent).toBeLessThan(TRANSPORT_LIMITS.maxMessageSize + 24 * 1024 * 1024);
    });
  }
});
