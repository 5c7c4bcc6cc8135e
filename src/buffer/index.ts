export { DurableBuffer } from "./buffer.ts";
export type { BufferOptions, BufferStats, DropReason, StoredBatch } from "./buffer.ts";
