import { describe, expect, it } from "vitest";
import { releaseFreedMemory } from "../../src/agent/memory.ts";
import { recordingLogger } from "../mapping/helpers.ts";

describe("returning freed memory after a burst", () => {
  it("gives back the pages V8 keeps pooled after a burst of short-lived objects", () => {
    const { logger, lines } = recordingLogger();
    // A burst like loading a large mapping: many small objects, then all garbage.
    let burst: { key: string; n: number }[][] | null = [];
    for (let i = 0; i < 40; i++) burst.push(Array.from({ length: 50_000 }, (_, n) => ({ key: `k${i}.${n}`, n })));
    const peak = process.memoryUsage.rss();
    burst = null;
    releaseFreedMemory(logger, "test");
    const after = process.memoryUsage.rss();
    expect(peak - after, `RSS ${Math.round(peak / 1e6)} → ${Math.round(after / 1e6)} MB`).toBeGreaterThan(100e6);
    const line = lines.find((l) => l.msg === "returned freed memory to the system");
    expect(line).toMatchObject({ reason: "test", rssBeforeMb: expect.any(Number), rssAfterMb: expect.any(Number), pauseMs: expect.any(Number) });
  });
});
