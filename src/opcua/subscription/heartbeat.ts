import type { Item } from "../../message.ts";

interface Beat {
  periodMs: number;
  last: Item | null;
  dueAt: number;
}

/**
 * Heartbeats: for each key with a period, the last value sent is sent again, marked `hb: true`
 * and stamped with the time of the heartbeat, whenever nothing was sent for a whole period.
 * Consumers that need a value per time window (dashboards, time-series gaps) get one, and the
 * mark keeps it apart from a real change. Pure bookkeeping; the caller owns the timer.
 */
export class Heartbeats {
  #beats = new Map<string, Beat>();

  get size(): number {
    return this.#beats.size;
  }

  /** Starts (or changes) the heartbeat of `key`; 0 stops it. */
  set(key: string, seconds: number | undefined, now: number): void {
    if (!seconds || seconds <= 0) {
      this.#beats.delete(key);
      return;
    }
    const periodMs = seconds * 1000;
    const beat = this.#beats.get(key);
    if (beat) {
      beat.periodMs = periodMs;
      beat.dueAt = Math.min(beat.dueAt, now + periodMs);
    } else {
      this.#beats.set(key, { periodMs, last: null, dueAt: now + periodMs });
    }
  }

  delete(key: string): void {
    this.#beats.delete(key);
  }

  /** A real value of `key` went out: the next heartbeat is a whole period away. */
  sent(key: string, item: Item, now: number): void {
    const beat = this.#beats.get(key);
    if (!beat) return;
    beat.last = item;
    beat.dueAt = now + beat.periodMs;
  }

  /** The heartbeat items due at `now`; each one restarts its key's period. */
  due(now: number): Item[] {
    const out: Item[] = [];
    const t = new Date(now).toISOString();
    for (const [key, beat] of this.#beats) {
      if (beat.dueAt > now) continue;
      // keep the grid (the timer ticks late, not early), unless far behind
      beat.dueAt += beat.periodMs;
      if (beat.dueAt <= now) beat.dueAt = now + beat.periodMs;
      if (!beat.last) continue;
      const { hb: _hb, ...value } = beat.last;
      out.push({ ...value, key, t, hb: true });
    }
    return out;
  }
}
