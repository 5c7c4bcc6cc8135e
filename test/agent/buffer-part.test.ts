import { createSecretKey, randomBytes } from "node:crypto";
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it, vi } from "vitest";
import { BufferPart } from "../../src/agent/buffer-part.ts";
import { Secret } from "../../src/config/secrets.ts";
import { KerfError } from "../../src/errors.ts";
import { silentLogger } from "../../src/log.ts";
import { captureLogger, dataMessage, tempDir } from "../buffer/helpers.ts";

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

describe("the buffer part's encryption", () => {
  const key = () => new Secret(createSecretKey(randomBytes(32)));

  it("says once at start whether the buffer is encrypted", async () => {
    const { dir, cleanup } = await tempDir();
    try {
      for (const encrypted of [false, true]) {
        const { logger, lines } = captureLogger();
        const stateDir = path.join(dir, String(encrypted));
        const encryption = encrypted ? { encryption: { key: key(), keyFile: path.join(dir, "buffer.key") } } : {};
        const part = new BufferPart({ stateDir, maxBytes: 50_000_000, maxItems: 1000, logger, onCommit: () => undefined, ...encryption });
        await part.start();
        part.sink.write([dataMessage(5, 0)]);
        part.sink.commit();
        await part.stop({ left: () => 5_000, drainMs: 0 });
        const said = lines.filter((l) => l.event === "buffer_encryption");
        expect(said).toEqual([expect.objectContaining({ encryption: encrypted ? "aes-256-gcm" : "off" })]);
        expect(said[0]!.msg).toMatch(encrypted ? /is encrypted \(AES-256-GCM, key from .*buffer\.key\)/ : /^buffer encryption is off: .* holds the values in clear .* set buffer\.encryption\.keyFile/);
      }
    } finally {
      await cleanup();
    }
  });

  it("refuses a key file inside the state directory, also through a symbolic link", async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const stateDir = path.join(dir, "state");
      mkdirSync(path.join(stateDir, "secrets"), { recursive: true });
      writeFileSync(path.join(stateDir, "secrets", "buffer.key"), randomBytes(32), { mode: 0o600 });
      symlinkSync(stateDir, path.join(dir, "elsewhere"));
      for (const keyFile of [path.join(stateDir, "secrets", "buffer.key"), path.join(dir, "elsewhere", "secrets", "buffer.key")]) {
        expect(() => new BufferPart({ stateDir, maxBytes: 50_000_000, maxItems: 1000, logger: silentLogger(), onCommit: () => undefined, encryption: { key: key(), keyFile } })).toThrow(
          expect.objectContaining({ code: "BUFFER_KEY", message: expect.stringContaining(`lies inside the state directory ${stateDir}`) }),
        );
      }
    } finally {
      await cleanup();
    }
  });
});
