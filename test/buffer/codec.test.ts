import { expect, it } from "vitest";
import { decodeBytes, encodeJson, parseMessages } from "../../src/buffer/codec.ts";

it("a stored payload that cannot be read back is a BUFFER_CORRUPT KerfError", () => {
  const corrupt = expect.objectContaining({ name: "KerfError", code: "BUFFER_CORRUPT" });
  expect(() => decodeBytes(7, new Uint8Array([0x5b, 0x5d]))).toThrow(corrupt);
  expect(() => decodeBytes(0, new TextEncoder().encode('{"a":1}'))).toThrow(corrupt);
  expect(() => parseMessages(Buffer.from('"[]"'))).toThrow(corrupt);
  const good = encodeJson([], false);
  expect(parseMessages(decodeBytes(good.format, good.payload))).toEqual([]);
});
