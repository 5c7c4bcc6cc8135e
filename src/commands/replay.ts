/**
 * The ids (jti) of the command envelopes this connector has taken, kept in SQLite until the
 * envelope could no longer pass verification anyway (exp plus the clock skew): a replayed
 * envelope is refused, also after a restart. An id is claimed before the command runs, so that
 * a crash in the middle of a command cannot make it run twice.
 *
 * Bounded: the verifier refuses envelopes that live longer than a few minutes, so the table
 * holds only the last few minutes of commands. Known limit: a clock that jumps far ahead prunes
 * ids early; when it comes back, an envelope captured before the jump could pass once more.
 */
import path from "node:path";
import type { DatabaseSync, StatementSync } from "node:sqlite";
import { DEFAULT_CLOCK_SKEW_SECONDS } from "./envelope.ts";
import { openStore, storeError } from "./sqlite.ts";

/** "KRPL" */
const APPLICATION_ID = 0x4b52504c;
const SCHEMA = `
CREATE TABLE seen (
  jti        TEXT PRIMARY KEY,
  keep_until INTEGER NOT NULL
) STRICT;
CREATE INDEX seen_keep_until ON seen (keep_until);
`;

/** Where the agent keeps the replay store in its state directory. */
export function replayFile(stateDir: string): string {
  return path.join(stateDir, "commands", "replay.db");
}

export interface ReplayStoreOptions {
  /** Must equal the verifier's: an id is kept as long as its envelope could still verify. */
  clockSkewSeconds?: number;
  /** Milliseconds since the epoch. */
  now?: () => number;
}

export class ReplayStore {
  readonly #db: DatabaseSync;
  readonly #file: string;
  readonly #skew: number;
  readonly #now: () => number;
  readonly #insert: StatementSync;
  readonly #prune: StatementSync;

  private constructor(db: DatabaseSync, file: string, options: ReplayStoreOptions) {
    this.#db = db;
    this.#file = file;
    this.#skew = options.clockSkewSeconds ?? DEFAULT_CLOCK_SKEW_SECONDS;
    this.#now = options.now ?? Date.now;
    this.#insert = db.prepare("INSERT INTO seen (jti, keep_until) VALUES (?, ?) ON CONFLICT (jti) DO NOTHING");
    this.#prune = db.prepare("DELETE FROM seen WHERE keep_until < ?");
  }

  /** Opens or creates the store, e.g. `<state>/commands/replay.db`. */
  static open(file: string, options: ReplayStoreOptions = {}): ReplayStore {
    return new ReplayStore(openStore(file, APPLICATION_ID, SCHEMA), file, options);
  }

  /**
   * Records `jti` of an envelope that expires at `exp` (seconds). True the first time; false for
   * an id already taken (a replay). Durable when it returns.
   */
  claim(jti: string, exp: number): boolean {
    try {
      this.prune();
      return Number(this.#insert.run(jti, exp + this.#skew).changes) === 1;
    } catch (err) {
      throw storeError(this.#file, "recording a command id", err);
    }
  }

  /** Forgets ids whose envelopes can no longer verify; returns how many. */
  prune(): number {
    try {
      return Number(this.#prune.run(Math.floor(this.#now() / 1000)).changes);
    } catch (err) {
      throw storeError(this.#file, "pruning command ids", err);
    }
  }

  get size(): number {
    return (this.#db.prepare("SELECT count(*) AS n FROM seen").get() as { n: number }).n;
  }

  close(): void {
    if (this.#db.isOpen) this.#db.close();
  }
}
