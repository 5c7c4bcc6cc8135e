import path from "node:path";
import { DurableBuffer, type BufferStats } from "../buffer/buffer.ts";
import { BufferWriter, type WriterHealth } from "../buffer/writer.ts";
import type { Logger } from "../log.ts";
import { itemCount, type MessageSink } from "../message.ts";
import { STOP_GRACE_MS, type Part, type PartHealth, type StopBudget } from "./part.ts";

export interface BufferPartHealth extends PartHealth {
  stats: BufferStats;
  writer: WriterHealth;
}

/**
 * The durable buffer and its writer: what the machines send goes here first. A buffer that
 * cannot be written (commits failing in a row, values pending) is a problem.
 */
export class BufferPart implements Part<BufferPartHealth> {
  readonly name = "buffer";
  readonly buffer: DurableBuffer;
  readonly #writer: BufferWriter;
  readonly #log: Logger;
  /** The counters at the stop, once the buffer is closed. */
  #final: BufferStats | null = null;
  /** Values that arrived after the buffer was closed (a session that did not stop in time). */
  #late = 0;
  /** Where the machines write; after the stop it only counts what comes too late. */
  readonly sink: MessageSink & { commit(): void };

  constructor(o: { stateDir: string; maxBytes: number; maxItems: number; logger: Logger; onCommit: () => void }) {
    this.#log = o.logger;
    this.buffer = DurableBuffer.open({ path: path.join(o.stateDir, "buffer.db"), maxBytes: o.maxBytes, logger: o.logger });
    this.#writer = new BufferWriter({ buffer: this.buffer, maxItems: o.maxItems, logger: o.logger, onCommit: o.onCommit });
    this.sink = {
      write: (messages) => {
        if (this.#final) {
          // only a session that outlived the stop deadline gets here
          if (this.#late === 0) this.#log.warn("values arrived after the buffer was closed; they are not stored");
          this.#late += itemCount(messages);
          return;
        }
        this.#writer.write(messages);
      },
      commit: () => {
        if (!this.#final) this.#writer.commit();
      },
    };
  }

  async start(): Promise<void> {}

  /** The stages values spent since the last call (waiting for the commit, the commit). */
  takeStages() {
    return this.#writer.takeStages();
  }

  stats(): BufferStats {
    return this.#final ?? this.buffer.stats();
  }

  async stop(budget: StopBudget): Promise<void> {
    // a session left behind may have written since
    this.#writer.commit();
    this.#writer.close();
    this.#final = this.buffer.stats();
    // A full compaction can take a while on a large file; with little time left it waits for the next start.
    this.buffer.close({ compact: budget.left() > STOP_GRACE_MS });
  }

  health(): BufferPartHealth {
    const writer = this.#writer.health();
    const problems =
      writer.failures > 0 && writer.pendingItems > 0
        ? [{ part: this.name, reason: `cannot write the buffer: ${writer.failures} commits failed in a row, ${writer.pendingItems} values wait (${writer.lastError ?? "no detail"})`, code: "BUFFER_IO" }]
        : [];
    return { problems, stats: this.stats(), writer };
  }
}
