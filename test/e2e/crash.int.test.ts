import { createSecretKey, randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DurableBuffer } from "../../src/buffer/buffer.ts";
import type { Demo } from "../../src/demo/setup.ts";
import { silentLogger } from "../../src/log.ts";
import { checkSeries, DEMO_MACHINE, loadKey, waitFor } from "../helpers/env.ts";
import { demoForKerfRun, editConfig, killHard, startConnector, stopLikeAContainer, type Connector } from "./connector.ts";

const COUNTERS = 20;

describe.each([
  ["in clear", false],
  ["encrypted", true],
])("connector killed with SIGKILL mid-stream, the buffer %s", (_, encrypted) => {
  let env: Awaited<ReturnType<typeof demoForKerfRun>>;
  let demo: Demo;
  const children: Connector[] = [];
  const key = randomBytes(32);
  const encryption = encrypted ? { encryption: { key: createSecretKey(key) } } : {};

  beforeAll(async () => {
    env = await demoForKerfRun({ load: { count: COUNTERS, periodMs: 100 } });
    demo = env.demo;
    if (encrypted) {
      // The key is mounted apart from the state dir, as a secret would be.
      const keyFile = path.join(env.dir, "secrets", "buffer.key");
      mkdirSync(path.dirname(keyFile), { mode: 0o700 });
      writeFileSync(keyFile, key, { mode: 0o600 });
      editConfig(demo.configFile, (c) => void (c.buffer = { ...c.buffer, encryption: { keyFile } }));
    }
  });
  afterAll(async () => {
    for (const c of children) await killHard(c);
    await env?.stop();
  });

  it("loses nothing it had buffered and delivers nothing twice", { timeout: 120_000 }, async () => {
    const store = demo.devcloud.store;
    const first = startConnector(demo.configFile, demo.connectorStateDir);
    children.push(first);
    await waitFor("values from the first connector process", () => Number(store.latest(DEMO_MACHINE)[loadKey(0)]?.v) >= 10, 30_000);

    // Hold acknowledgements back so that the buffer has a backlog when the process dies.
    demo.devcloud.faults.status = () => 503;
    await new Promise((r) => setTimeout(r, 3_000));
    await killHard(first);
    demo.devcloud.faults.status = undefined;

    // What the dead process had on disk: every one of these must reach the cloud.
    const buffer = DurableBuffer.open({ path: path.join(demo.connectorStateDir, "buffer.db"), maxBytes: 256 * 1024 ** 2, logger: silentLogger(), ...encryption });
    expect(buffer.encrypted).toBe(encrypted);
    const pending = new Map<string, Set<number>>();
    for (const batch of buffer.next(1_000_000)) {
      for (const m of batch.messages) {
        if (m.kind !== "data") continue;
        for (const item of m.items) {
          if (!pending.has(item.key)) pending.set(item.key, new Set());
          pending.get(item.key)!.add(Number(item.v));
        }
      }
    }
    const statsAtKill = buffer.stats();
    buffer.close();
    expect(pending.get(loadKey(0))?.size ?? 0).toBeGreaterThan(15);
    const maxBeforeKill = Math.max(...pending.get(loadKey(0))!);

    const second = startConnector(demo.configFile, demo.connectorStateDir);
    children.push(second);
    await waitFor("the backlog and new values delivered", () => Number(store.latest(DEMO_MACHINE)[loadKey(0)]?.v) > maxBeforeKill + 20, 45_000);
    expect(await stopLikeAContainer(second)).toMatchObject({ code: 0, killed: false });

    for (let i = 0; i < COUNTERS; i++) {
      const key = loadKey(i);
      const items = store.items(DEMO_MACHINE, key);
      const received = new Set(items.map((x) => Number(x.v)));
      for (const v of pending.get(key) ?? []) expect(received.has(v), `${key}=${v} was buffered at the kill`).toBe(true);
      const s = checkSeries(items);
      expect(s.duplicates, key).toBe(0);
      // The only values missing are those the server published while no connector was running.
      expect(s.gaps.length, key).toBeLessThanOrEqual(1);
      for (const [after] of s.gaps) expect(after, key).toBeGreaterThanOrEqual(maxBeforeKill);
    }
    expect(statsAtKill.appendedItems).toBe(statsAtKill.ackedItems + statsAtKill.droppedItems + statsAtKill.items);
  });
});
