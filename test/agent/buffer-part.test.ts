import { describe, expect, it, vi } from "vitest";
import { BufferPart } from "../../src/agent/buffer-part.ts";
import { KerfError } from "../../src/errors.ts";
import { silentLogger } from "../../src/log.ts";
import { dataMessage, tempDir } from "../buffer/helpers.ts";

describe("the buffer part's health", () => {
  it("names the buffer while it cannot be written and values wait, and is well again once it takes writes", async () => {
    const { dir, cleanup } = await tempDir();
    const part = new BufferPart({ stateDir: dir, maxBytes: 50_000_000, maxItems: 1000, logger: silentLogger(), onCommit: () => undefined });
    try {
      await part.start();
      expect(part.health().problems).toEqual([]);
      // The real buffer behind a disk that is full for the next three commits.
      const append = part.buffer.appendMany.bind(part.buffer);
      let failNext = 3;
      part.buffer.appendMany = (batches, options) => {
        if (failNext-- > 0) throw new KerfError("BUFFER_IO", `buffer ${dir}: cannot append: SQLITE_FULL: database or disk is full`);
        return append(batches, options);
      };
      part.sink.write([dataMessage(5, 0)]);
      expect(part.health().problems).toEqual([{ part: "buffer", reason: expect.stringMatching(/^cannot write the buffer: 1 commits failed in a row, 5 values wait \(.*disk is full/), code: "BUFFER_IO" }]);

      await vi.waitFor(() => expect(part.health().writer.failures).toBe(0), { timeout: 20_000 });
      expect(part.health().problems).toEqual([]);
      expect(part.health().stats.items).toBe(5);
    } finally {
      await part.stop({ left: () => 5_000, drainMs: 0 });
      await cleanup();
    }
  });
});
