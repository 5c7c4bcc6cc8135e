import { WW_MODE, WW_STATE } from "./nodes.ts";

/**
 * The behaviour of the simulated machine, free of OPC UA so it can be read and tested alone.
 *
 * A panel saw cycles WORKING → READY → (sometimes STANDBY) → WORKING. The spindle ramps up and
 * down with a first-order lag, the feed only runs once the spindle is near speed, and pieces
 * come out as the fed length passes each piece's length. The dust extraction loses airflow for
 * a while once per alarm period; while it is low a working machine stops in ERROR.
 */

export type WwState = (typeof WW_STATE)[keyof typeof WW_STATE];

export interface MachineSnapshot {
  state: WwState;
  mode: number;
  spindleRpm: number;
  /** m/min */
  feedRate: number;
  program: string;
  piecesIn: number;
  piecesOut: number;
  /** pieces out since the simulator started */
  relativePiecesOut: number;
  runsGood: number;
  /** ms with the machine on */
  machineOnMs: number;
  /** ms in WORKING */
  workingMs: number;
  /** mm fed in total */
  lengthMm: number;
  /** parts per minute at the current feed */
  cycle: number;
  /** m³/h */
  dustAirflow: number;
  dustAirflowOk: boolean;
}

export interface SimulationOptions {
  /** One dust-extraction dip per period; default 60 s. */
  alarmPeriodMs?: number;
  /** Seed of the pseudo-random generator, so runs can be repeated. */
  seed?: number;
}

interface Program {
  name: string;
  /** piece length in mm */
  pieceMm: number;
  /** feed in m/min */
  feed: number;
  rpm: number;
}

const PROGRAMS: readonly Program[] = [
  { name: "PANEL-600x400", pieceMm: 600, feed: 18, rpm: 18_000 },
  { name: "DOOR-2040x820", pieceMm: 2040, feed: 12, rpm: 15_000 },
  { name: "SHELF-900x300", pieceMm: 900, feed: 20, rpm: 18_000 },
  { name: "FRONT-716x396", pieceMm: 716, feed: 16, rpm: 16_500 },
];

export const DUST_AIRFLOW_NOMINAL = 2400;
export const DUST_AIRFLOW_MIN = 1500;

// share of each alarm period during which the airflow is low
const ALARM_DUTY = 0.25;
const SPINDLE_TAU_MS = 1500;
const FEED_TAU_MS = 400;

/** mulberry32: tiny, fast, good enough for plausible noise. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class MachineSimulation {
  readonly #random: () => number;
  readonly #alarmPeriodMs: number;
  #elapsedMs = 0;
  #phaseLeftMs: number;
  #programIndex = 0;
  #pieceProgressMm = 0;
  readonly #s: MachineSnapshot;

  constructor(options: SimulationOptions = {}) {
    this.#random = seededRandom(options.seed ?? 0x6b657266);
    this.#alarmPeriodMs = options.alarmPeriodMs ?? 60_000;
    // start working at once, so a fresh simulator shows changing values immediately
    this.#phaseLeftMs = this.#between(20_000, 40_000);
    this.#s = {
      state: WW_STATE.WORKING,
      mode: WW_MODE.AUTOMATIC,
      spindleRpm: 0,
      feedRate: 0,
      program: PROGRAMS[0]!.name,
      piecesIn: 48_212,
      piecesOut: 48_211,
      relativePiecesOut: 0,
      runsGood: 3_907,
      machineOnMs: 31_556_000_000 / 6, // about two months of operation
      workingMs: 31_556_000_000 / 9,
      lengthMm: 36_400_000,
      cycle: 0,
      dustAirflow: DUST_AIRFLOW_NOMINAL,
      dustAirflowOk: true,
    };
  }

  get snapshot(): Readonly<MachineSnapshot> {
    return this.#s;
  }

  /** Advances the machine by `dtMs` and returns its new state. */
  step(dtMs: number): Readonly<MachineSnapshot> {
    const s = this.#s;
    this.#elapsedMs += dtMs;
    this.#stepDust();
    this.#stepState(dtMs);
    const program = PROGRAMS[this.#programIndex]!;

    const working = s.state === WW_STATE.WORKING;
    const rpmTarget = working ? program.rpm : 0;
    s.spindleRpm = lag(s.spindleRpm, rpmTarget, dtMs, SPINDLE_TAU_MS);
    if (working) s.spindleRpm *= 1 + (this.#random() - 0.5) * 0.004;
    s.spindleRpm = s.spindleRpm < 1 ? 0 : Math.round(s.spindleRpm);

    const feedTarget = working && s.spindleRpm > 0.9 * program.rpm ? program.feed : 0;
    s.feedRate = round2(lag(s.feedRate, feedTarget, dtMs, FEED_TAU_MS));
    if (s.feedRate < 0.05) s.feedRate = 0;

    const fedMm = (s.feedRate * 1000 * dtMs) / 60_000;
    s.lengthMm += fedMm;
    this.#pieceProgressMm += fedMm;
    while (this.#pieceProgressMm >= program.pieceMm) {
      this.#pieceProgressMm -= program.pieceMm;
      s.piecesOut += 1;
      s.relativePiecesOut += 1;
      s.piecesIn += 1;
    }
    s.cycle = round2((s.feedRate * 1000) / program.pieceMm);

    if (s.state !== WW_STATE.OFFLINE) s.machineOnMs += dtMs;
    if (working) s.workingMs += dtMs;
    return s;
  }

  #stepDust(): void {
    const s = this.#s;
    const phase = (this.#elapsedMs % this.#alarmPeriodMs) / this.#alarmPeriodMs;
    // the dip sits in the second half of each period, so a fresh simulator starts healthy
    const low = phase >= 0.5 && phase < 0.5 + ALARM_DUTY;
    const base = low ? 900 : DUST_AIRFLOW_NOMINAL;
    s.dustAirflow = Math.round(base * (1 + (this.#random() - 0.5) * 0.02));
    s.dustAirflowOk = s.dustAirflow >= DUST_AIRFLOW_MIN;
  }

  #stepState(dtMs: number): void {
    const s = this.#s;
    if (!s.dustAirflowOk) {
      // no extraction, no cutting: the machine stops until the airflow is back
      if (s.state === WW_STATE.WORKING) s.state = WW_STATE.ERROR;
      return;
    }
    if (s.state === WW_STATE.ERROR) {
      this.#enter(WW_STATE.READY);
      return;
    }
    this.#phaseLeftMs -= dtMs;
    if (this.#phaseLeftMs > 0) return;
    switch (s.state) {
      case WW_STATE.WORKING:
        s.runsGood += 1;
        this.#enter(WW_STATE.READY);
        break;
      case WW_STATE.READY:
        this.#enter(this.#random() < 0.15 ? WW_STATE.STANDBY : WW_STATE.WORKING);
        break;
      default:
        this.#enter(WW_STATE.WORKING);
    }
  }

  #enter(state: WwState): void {
    const s = this.#s;
    s.state = state;
    s.mode = state === WW_STATE.STANDBY ? WW_MODE.SLEEP : WW_MODE.AUTOMATIC;
    if (state === WW_STATE.WORKING) {
      this.#programIndex = Math.floor(this.#random() * PROGRAMS.length);
      s.program = PROGRAMS[this.#programIndex]!.name;
      this.#phaseLeftMs = this.#between(20_000, 40_000);
    } else if (state === WW_STATE.READY) {
      this.#phaseLeftMs = this.#between(4_000, 8_000);
    } else {
      this.#phaseLeftMs = this.#between(6_000, 12_000);
    }
  }

  #between(lo: number, hi: number): number {
    return lo + this.#random() * (hi - lo);
  }
}

function lag(current: number, target: number, dtMs: number, tauMs: number): number {
  return current + (target - current) * (1 - Math.exp(-dtMs / tauMs));
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
