import { StatusCodes } from "node-opcua-status-code";
import { afterAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../src/log.ts";
import { BAD_ENCODING_LIMITS_EXCEEDED } from "../../src/opcua/subscription/encode.ts";
import { MachineSession } from "../../src/opcua/session/session.ts";
import { ROGUE_BAD_UTF8_BYTES, ROGUE_HTML, ROGUE_PROTO_JSON } from "../../src/simulator/nodes.ts";
import type { Item, Message } from "../../src/message.ts";
import { checkSeries, tempDir, waitFor } from "../helpers/env.ts";
import { COUNTER_KEY, ROGUE_KEYS, rogueSpec, startRogueSetup } from "./helpers.ts";

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/**
 * Memory bounds, for the client alone (the simulator runs in a child process). Each second the
 * simulator renews a 10 MiB string and a 4 MB array: one publish of about 14 MB, which the
 * client receives as chunks, reassembles, decrypts and decodes (a few transient copies of it,
 * mostly outside the V8 heap), then refuses value by value. Measured over 37 rounds: RSS between
 * +76 and +129 MB above the start, the V8 heap flat at 40 MB.
 * - PEAK: 200 MB of RSS. node-opcua holds a message several times over while it arrives;
 *   measured +115 to +156 MB in test runs on a busy machine.
 * - HEAP_DRIFT: the heap's floor (its lowest sample, so uncollected garbage does not count)
 *   over the last rounds against the first ones. Forwarding the values would keep each
 *   round's 10 MiB string in the sink: +60 MB over six rounds.
 */
const PEAK_GROWTH_MB = 200;
const HEAP_DRIFT_MB = 20;
const MORE_ROUNDS = 6;

describe("a rogue server", () => {
  it("sends huge, deep, malformed and hostile values: each arrives bounded or marked, the counter keeps flowing, memory stays bounded", async () => {
    const tmp = await tempDir("kerf-rogue-");
    cleanups.push(tmp.cleanup);
    const setup = await startRogueSetup(tmp.dir, { periodMs: 1000 });
    cleanups.push(setup.stop);

    const items: Item[] = [];
    const statuses: Message[] = [];
    const sink = {
      write(messages: Message[]) {
        for (const m of messages) {
          if (m.kind === "data") items.push(...m.items);
          else statuses.push(m);
        }
      },
    };
    const session = new MachineSession({ spec: rogueSpec(setup.sim), pki: setup.pki, sink, logger: silentLogger(), backoff: { initialMs: 100, maxMs: 500 } });
    cleanups.push(() => session.stop());

    const rss0 = process.memoryUsage.rss();
    let peak = rss0;
    let heapFloor = Infinity;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage.rss());
      heapFloor = Math.min(heapFloor, process.memoryUsage().heapUsed);
    }, 25);
    cleanups.push(async () => clearInterval(sampler));
    session.start();

    const of = (key: string) => items.filter((i) => i.key === key);
    const rounds = () => of(ROGUE_KEYS.hugeString).length;
    await waitFor("every rogue value", () => Object.values(ROGUE_KEYS).every((k) => of(k).length > 0), 30_000);
    await waitFor("two rounds of the huge values", () => rounds() >= 2, 20_000);
    const earlyHeapFloor = heapFloor;
    const counterBefore = of(COUNTER_KEY).length;
    // rounds, not seconds: on a busy machine a round can take longer than its period
    await waitFor(`${MORE_ROUNDS / 2} more rounds`, () => rounds() >= 2 + MORE_ROUNDS / 2, 30_000);
    heapFloor = Infinity;
    await waitFor(`${MORE_ROUNDS / 2} more rounds`, () => rounds() >= 2 + MORE_ROUNDS, 30_000);
    clearInterval(sampler);
    const lateHeapFloor = heapFloor;
    const mb = (n: number) => n / 1024 / 1024;
    console.log(`rogue: client RSS +${mb(peak - rss0).toFixed(0)} MB at the peak; heap floor ${mb(earlyHeapFloor).toFixed(0)} MB in the first rounds, ${mb(lateHeapFloor).toFixed(0)} MB in the last`);

    // nothing broke: one connection all along, never offline
    expect(session.state).toBe("connected");
    expect(session.health().connects).toBe(1);
    expect(statuses.filter((s) => s.kind === "status" && s.state === "offline")).toEqual([]);

    // the counter kept flowing beside them, without a gap
    // 100 ms counter, ≥ 6 rounds of 1 s: about 60 values; 20 leaves room for a busy machine
    expect(of(COUNTER_KEY).length - counterBefore).toBeGreaterThan(20);
    const series = checkSeries(of(COUNTER_KEY));
    expect(series.gaps).toEqual([]);
    expect(series.duplicates).toBe(0);

    // over Kerf's limits: never forwarded, always marked
    for (const key of [ROGUE_KEYS.hugeString, ROGUE_KEYS.hugeArray, ROGUE_KEYS.deepNested]) {
      expect(of(key).length, key).toBeGreaterThanOrEqual(2 + MORE_ROUNDS);
      for (const item of of(key)) expect(item, key).toMatchObject({ v: null, q: BAD_ENCODING_LIMITS_EXCEEDED });
    }
    // over the transport limit (16 MiB): the server itself refuses to send it, as it must
    expect(of(ROGUE_KEYS.overTransport)[0]).toMatchObject({ v: null, q: StatusCodes.BadResponseTooLarge.value });

    // malformed UTF-8 arrives as replacement characters: well-formed text, valid JSON
    const text = of(ROGUE_KEYS.badUtf8)[0]!;
    expect(text.q).toBe(0);
    expect(typeof text.v).toBe("string");
    expect((text.v as string).isWellFormed()).toBe(true);
    expect(text.v).toMatch(/^lone lead \ufffd, lone trail \ufffd, after a letter é\ufffd/);
    expect(JSON.parse(JSON.stringify(text.v))).toBe(text.v);
    expect(of(ROGUE_KEYS.badUtf8Bytes)[0]).toMatchObject({ v: Buffer.from(ROGUE_BAD_UTF8_BYTES).toString("base64"), q: 0 });

    // hostile text is data: the JSON string as sent (never parsed), the markup unchanged
    expect(of(ROGUE_KEYS.protoKeys)[0]).toMatchObject({ v: ROGUE_PROTO_JSON, q: 0 });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(of(ROGUE_KEYS.html)[0]).toMatchObject({ v: ROGUE_HTML, q: 0 });

    // every item the sink got is small, whatever the server sent
    for (const item of items) expect(Buffer.byteLength(JSON.stringify(item))).toBeLessThan(70 * 1024);
    expect(mb(peak - rss0)).toBeLessThan(PEAK_GROWTH_MB);
    expect(mb(lateHeapFloor - earlyHeapFloor)).toBeLessThan(HEAP_DRIFT_MB);
  });
});
