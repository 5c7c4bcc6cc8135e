import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseEnvelope, parseWithSchema } from "../../src/devcloud/envelope.ts";

// Mostly valid values with the odd wrong one, so that both paths get exercised.
const name = fc.oneof({ weight: 40, arbitrary: fc.string({ minLength: 1, maxLength: 20 }) }, fc.constant(""), fc.string({ minLength: 257, maxLength: 260 }), fc.integer());
const time = fc.oneof(
  { weight: 40, arbitrary: fc.constantFrom("2026-11-24T10:00:00.000Z", "2026-11-24T10:00:01Z", "2024-02-29T23:59:59.123456Z") },
  fc.constantFrom("2026-02-30T00:00:00Z", "2026-11-24T10:00:00+01:00", "2026-11-24 10:00:00Z", "yesterday", ""),
  fc.integer(),
);
const quality = fc.oneof({ weight: 40, arbitrary: fc.constantFrom(0, 0x80000000, 0xffffffff) }, fc.constantFrom(-1, 0x1_0000_0000, 1.5, Number.MAX_SAFE_INTEGER + 2), fc.string());
const value = fc.oneof(fc.double(), fc.string(), fc.constant(null), fc.boolean(), fc.array(fc.integer(), { maxLength: 3 }));
const item = fc.record(
  { key: name, v: value, q: quality, t: time, u: fc.string(), hb: fc.boolean() },
  { requiredKeys: ["key", "v", "q", "t"] },
);
// now and then an item that lacks a field
const someItem = fc.oneof({ weight: 30, arbitrary: item }, fc.record({ key: name, q: quality, t: time }), fc.record({ key: name, v: value, t: time }));
const data = fc.record({ kind: fc.constant("data"), machine: name, items: fc.array(someItem, { maxLength: 6 }) });
const status = fc.record({ kind: fc.constant("status"), machine: name, state: fc.constantFrom("online", "offline", "gone"), t: time });
const envelope = fc.record({
  connector: name,
  batch: fc.oneof({ weight: 40, arbitrary: fc.nat() }, fc.constantFrom(-1, 0.5, "1")),
  messages: fc.array(fc.oneof({ weight: 40, arbitrary: data }, { weight: 5, arbitrary: status }, fc.constant(null), fc.constant([])), { maxLength: 4 }),
  extra: fc.string(),
});

describe("ingest envelope", () => {
  it("the fast path for plainly valid data items gives exactly what the schema gives", () => {
    let valid = 0;
    fc.assert(
      fc.property(fc.oneof({ weight: 9, arbitrary: envelope }, fc.anything()), (input) => {
        const reference = parseWithSchema(input);
        const result = parseEnvelope(input);
        expect(result.ok).toBe(reference.ok);
        if (reference.ok) {
          valid++;
          expect(result).toStrictEqual(reference);
        }
      }),
      { numRuns: 3000 },
    );
    // the generator must reach the accepting path, or the comparison says little
    expect(valid).toBeGreaterThan(100);
  });

  it("refuses what the schema refuses, with the schema's words", () => {
    const good = { connector: "c", batch: 1, messages: [{ kind: "data", machine: "m", items: [{ key: "k", v: 1, q: 0, t: "2026-11-24T10:00:00Z" }] }] };
    expect(parseEnvelope(good)).toMatchObject({ ok: true });
    const badDay = structuredClone(good);
    badDay.messages[0]!.items[0]!.t = "2026-02-30T10:00:00Z";
    expect(parseEnvelope(badDay)).toEqual({ ok: false, issues: ["messages.0.items.0.t: expected an ISO 8601 UTC timestamp such as 2026-01-31T12:00:00.000Z"] });
    const noValue = structuredClone(good) as { messages: { items: Record<string, unknown>[] }[] };
    delete noValue.messages[0]!.items[0]!.v;
    expect(parseEnvelope(noValue)).toEqual({ ok: false, issues: ["messages.0.items.0.v: v is missing (use null for no value)"] });
  });
});
