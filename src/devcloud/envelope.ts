/**
 * The ingest envelope as the devcloud validates it: the executable form of docs/protocol.md.
 * Unknown fields are ignored, so a newer connector can add fields without breaking an older cloud.
 */
import { z } from "zod";
import type { Message } from "../types.ts";

const name = z.string().min(1).max(256);
const timestamp = z.iso.datetime({ message: "expected an ISO 8601 UTC timestamp such as 2026-01-31T12:00:00.000Z" });

const item = z
  .object({ key: name, v: z.unknown(), q: z.int().min(0).max(0xffff_ffff), t: timestamp })
  .refine((i) => i.v !== undefined, { message: "v is missing (use null for no value)", path: ["v"] });

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
  const result = envelope.safeParse(value);
  if (result.success) return { ok: true, envelope: result.data as Envelope };
  const issues = result.error.issues.slice(0, 20).map((i) => `${i.path.length ? i.path.join(".") : "(body)"}: ${i.message}`);
  return { ok: false, issues };
}
