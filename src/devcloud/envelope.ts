/**
 * The ingest envelope as the devcloud validates it: the executable form of docs/protocol.md.
 * Unknown fields are ignored, so a newer connector can add fields without breaking an older cloud.
 */
import { z } from "zod";
import type { Message } from "../message.ts";

const name = z.string().min(1).max(256);
const timestamp = z.iso.datetime({ message: "expected an ISO 8601 UTC timestamp such as 2026-01-31T12:00:00.000Z" });

const value = z.custom<unknown>((v) => v !== undefined, { message: "v is missing (use null for no value)" });
const item = z.object({ key: name, v: value, q: z.int().min(0).max(0xffff_ffff), t: timestamp });

const message = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("data"), machine: name, items: z.array(item).min(1) }),
  z.object({ kind: z.literal("event"), machine: name, key: name, t: timestamp, fields: z.record(z.string(), z.unknown()) }),
  z.object({ kind: z.literal("status"), machine: name, state: z.enum(["online", "offline"]), reason: z.string().max(1024).optional(), t: timestamp }),
]);

const envelope = z.object({
  connector: name,
  batch: z.int().min(0),
  messages: z.array(message).min(1),
});

export interface Envelope {
  connector: string;
  batch: number;
  messages: Message[];
}

/** The envelope, or the list of problems, each as "path: message". */
export function parseEnvelope(value: unknown): { ok: true; envelope: Envelope } | { ok: false; issues: string[] } {
  const fast = plainlyValid(value);
  if (fast) return { ok: true, envelope: fast };
  return parseWithSchema(value);
}

/** What the schema alone makes of `value` (the reference that plainlyValid is tested against). */
export function parseWithSchema(value: unknown): { ok: true; envelope: Envelope } | { ok: false; issues: string[] } {
  const result = envelope.safeParse(value);
  if (result.success) return { ok: true, envelope: result.data as Envelope };
  const issues = result.error.issues.slice(0, 20).map((i) => `${i.path.length ? i.path.join(".") : "(body)"}: ${i.message}`);
  return { ok: false, issues };
}

type Fields = Record<string, unknown>;

const isFields = (x: unknown): x is Fields => typeof x === "object" && x !== null && !Array.isArray(x);
const isName = (x: unknown): x is string => typeof x === "string" && x.length >= 1 && x.length <= 256;
const isQuality = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0 && (x as number) <= 0xffff_ffff;

/**
 * The envelope as the schema would return it, when every data item is plainly valid; null
 * otherwise, and the schema decides (and words the problems). At 100,000 items/s the schema's
 * work per item takes most of a core, which the benchmark needs for the connector it measures.
 * Items of one batch mostly share their timestamp, so each distinct one is checked once.
 */
function plainlyValid(value: unknown): Envelope | null {
  if (!isFields(value)) return null;
  const { connector, batch, messages } = value;
  if (!isName(connector) || !Number.isSafeInteger(batch) || (batch as number) < 0 || !Array.isArray(messages) || messages.length === 0) return null;
  const out: Message[] = [];
  let validTime: string | null = null;
  for (const m of messages) {
    if (!isFields(m) || m.kind !== "data") {
      const other = message.safeParse(m);
      if (!other.success) return null;
      out.push(other.data as Message);
      continue;
    }
    if (!isName(m.machine) || !Array.isArray(m.items) || m.items.length === 0) return null;
    const items: { key: string; v: unknown; q: number; t: string }[] = [];
    for (const i of m.items as unknown[]) {
      if (!isFields(i) || !isName(i.key) || i.v === undefined || !isQuality(i.q) || typeof i.t !== "string") return null;
      if (i.t !== validTime) {
        if (!timestamp.safeParse(i.t).success) return null;
        validTime = i.t;
      }
      items.push({ key: i.key, v: i.v, q: i.q, t: i.t });
    }
    out.push({ kind: "data", machine: m.machine, items } as Message);
  }
  return { connector, batch: batch as number, messages: out };
}
