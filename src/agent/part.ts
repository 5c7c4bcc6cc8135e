/**
 * What the agent composes: each part has a name, starts, stops within the time it is given, and
 * says through health() whether its loop makes progress. The agent starts its parts in order and
 * stops them in reverse; a new subsystem (update, remote commands, metrics) is one more entry.
 */
export interface Part<H extends PartHealth = PartHealth> {
  readonly name: string;
  start(): Promise<void>;
  stop(budget: StopBudget): Promise<void>;
  health(now: number): H;
}

export interface PartHealth {
  /** Empty while the part makes progress. */
  problems: Problem[];
  /** What needs the operator soon but does not stop progress (health stays healthy), e.g. a certificate near expiry. */
  warnings?: Problem[];
}

/** Why a part does not make progress: the part (or machine) concerned, the reason, the code of its last error. */
export interface Problem {
  part: string;
  reason: string;
  code?: string;
}

/** What is left of the stop deadline; `left(reserve)` keeps `reserve` ms for the parts after this one. */
export interface StopBudget {
  left(reserveMs?: number): number;
  /** How long to wait for the backlog to go out, within the deadline and only while the cloud answers. */
  drainMs: number;
}

/** Waits for `promise` at most `ms`; true when it settled in time (a rejection counts as settled). */
export async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const settled = promise.then(
    () => true,
    () => true,
  );
  const done = await Promise.race([settled, new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)))]);
  clearTimeout(timer);
  return done;
}

/** Requests in flight at a stop get this long to be answered before they are aborted (they stay buffered). */
export const STOP_GRACE_MS = 1_000;
