import type { KeyObject } from "node:crypto";
import { realpathSync } from "node:fs";
import path from "node:path";
import { DurableBuffer, type BufferStats } from "../buffer/buffer.ts";
import { BufferWriter, type WriterHealth } from "../buffer/writer.ts";
import type { Secret } from "../config/secrets.ts";
import { KerfError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { itemCount, type MessageSink } from "../message.ts";
import { STOP_GRACE_MS, type Part, type PartHealth, type StopBudget } from "./part.ts";

export interface BufferPartHealth extends PartHealth {
  stats: BufferStats;
  writer: WriterHealth;
  /** Values the machines handed over since start (before the writer: also those it could not commit). */
  received: number;
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
  #received = 0;
  /** Where the machines write; after the stop it only counts what comes too late. */
  readonly sink: MessageSink & { commit(): void };

  constructor(o: {
    stateDir: string;
    maxBytes: number;
    maxItems: number;
    logger: Logger;
    onCommit: () => void;
    /** buffer.encryption: the key read from `keyFile` by the config loader. */
    encryption?: { key: Secret<KeyObject>; keyFile: string };
  }) {
    this.#log = o.logger;
    const file = path.join(o.stateDir, "buffer.db");
    if (o.encryption) refuseKeyInside(o.stateDir, o.encryption.keyFile);
    const encryption = o.encryption && { key: o.encryption.key.reveal(), keyFile: o.encryption.keyFile };
    this.buffer = DurableBuffer.open({ path: file, maxBytes: o.maxBytes, logger: o.logger, ...(encryption ? { encryption } : {}) });
    if (encryption) {
      this.#log.info({ event: "buffer_encryption", encryption: "aes-256-gcm", keyFile: encryption.keyFile }, `buffer ${file} is encrypted (AES-256-GCM, key from ${encryption.keyFile})`);
    } else {
      this.#log.info({ event: "buffer_encryption", encryption: "off" }, `buffer encryption is off: ${file} holds the values in clear until they are sent; set buffer.encryption.keyFile to encrypt them`);
    }
    this.#writer = new BufferWriter({ buffer: this.buffer, maxItems: o.maxItems, logger: o.logger, onCommit: o.onCommit });
    this.sink = {
      write: (messages) => {
        this.#received += itemCount(messages);
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
    return { problems, stats: this.stats(), writer, received: this.#received };
  }
}

/**
 * A key kept on the state volume would travel with every copy of the data it protects: the
 * key file must be mounted apart (a secret, another volume).
 */
function refuseKeyInside(stateDir: string, keyFile: string): void {
  const real = (p: string) => {
    try {
      return realpathSync(p);
    } catch {
      return path.resolve(p);
    }
  };
  const rel = path.relative(real(stateDir), real(keyFile));
  if (rel !== "" && rel !== ".." && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel)) {
    throw new KerfError("BUFFER_KEY", `the buffer key file ${keyFile} lies inside the state directory ${stateDir}: a copy of the state volume would carry the key with the data it protects`, {
      details: ["mount the key apart from the state directory (e.g. a secret under /run/secrets) and point buffer.encryption.keyFile there"],
    });
  }
}
