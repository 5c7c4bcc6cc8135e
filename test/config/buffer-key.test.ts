import { createCipheriv, randomBytes } from "node:crypto";
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { inspect } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { GOOD_CONFIG, lines, load, loadError, tempDir, type TempDir } from "./helpers.ts";

let t: TempDir;
beforeEach(async () => {
  t = await tempDir();
});
afterEach(async () => {
  await t.cleanup();
});

const withKey = (file: string) => `${GOOD_CONFIG}buffer:\n  encryption:\n    keyFile: ${file}\n`;
/** buffer.encryption.keyFile's value is at line 11, column 14 of withKey's config. */
const AT = "kerf.yaml:11:14: buffer.encryption.keyFile: ";

/** What `key` encrypts: two keys give the same block only if they are the same key. */
function fingerprint(key: Parameters<typeof createCipheriv>[1]): string {
  const c = createCipheriv("aes-256-ecb", key, null);
  return Buffer.concat([c.update(Buffer.alloc(16)), c.final()]).toString("hex");
}

describe("buffer.encryption.keyFile", () => {
  const raw = randomBytes(32);
  raw[0] = 0; // never all printable
  it.each([
    ["32 raw bytes", raw],
    ["64 hex characters and a newline", Buffer.from(`${raw.toString("hex")}\n`)],
    ["44 base64 characters", Buffer.from(raw.toString("base64"))],
  ])("reads the key as %s, into a secret that never prints", async (_, content) => {
    await mkdir(`${t.dir}/keys`);
    await writeFile(`${t.dir}/keys/buffer.key`, content, { mode: 0o600 });
    const loaded = await load(t, withKey("./keys/buffer.key"));
    const key = loaded.secrets.bufferKey!;
    expect(fingerprint(key.reveal())).toBe(fingerprint(raw));
    expect(loaded.config.buffer.encryption).toEqual({ keyFile: `${t.dir}/keys/buffer.key` });
    const shown = `${key} ${JSON.stringify({ key })} ${inspect({ key })}`;
    expect(shown).not.toContain(raw.toString("hex"));
    expect(shown).toContain("[redacted]");
    expect(loaded.warnings).toEqual([]);
  });

  it.each([
    ["a missing file", null, 0o600, `cannot read the key file (found "./k": no such file; expected a readable file of 32 random bytes, 64 hex characters or 44 base64 characters)`],
    ["a password of 32 characters", Buffer.from("correct horse battery staple 123"), 0o600, /^the key file holds 32 characters of text, not 32 random bytes \(found "\.\/k"; expected .*head -c 32 \/dev\/urandom > FILE\)$/],
    ["31 bytes", randomBytes(31), 0o600, /^the key file holds 31 bytes that are not a key in any of the three forms \(found "\.\/k"; expected 32 random bytes, 64 hex/],
    ["an empty file", Buffer.alloc(0), 0o600, /^the key file is empty /],
    ["a world-readable file", randomBytes(32), 0o644, /^the key file can be read or written by every user of this machine \(found "\.\/k" with mode 0644; expected 0600 or 0400: chmod 600 it/],
  ])("refuses %s, at its line, naming the file and what was expected", async (_, content, mode, message) => {
    if (content) {
      await writeFile(`${t.dir}/k`, content);
      await chmod(`${t.dir}/k`, mode);
    }
    const err = await loadError(t, withKey("./k"));
    expect(err.code).toBe("SECRET_MISSING");
    const [line, ...rest] = lines(err, t.dir);
    expect(rest).toEqual([]);
    expect(line!.startsWith(AT)).toBe(true);
    if (typeof message === "string") expect(line!.slice(AT.length)).toBe(message);
    else expect(line!.slice(AT.length)).toMatch(message);
  });

  it("warns about a key its group may read", async () => {
    await writeFile(`${t.dir}/k`, randomBytes(32).toString("hex"));
    await chmod(`${t.dir}/k`, 0o640);
    const loaded = await load(t, withKey("./k"));
    expect(loaded.secrets.bufferKey).toBeDefined();
    expect(loaded.warnings.map((w) => w.split(t.dir + "/").join(""))).toEqual([`${AT}the key file can be read by its group (found mode 0640; expected 0600 or 0400)`]);
  });
});
