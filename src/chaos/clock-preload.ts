/**
 * Preload (`node --import`) that shifts this process's JavaScript wall clock (Date.now,
 * new Date()): by KERF_CLOCK_SHIFT_MS milliseconds, or by the number in the file named by
 * KERF_CLOCK_SHIFT_FILE, re-read every 100 ms, so that the chaos suite can step the clock
 * forward or back while the connector runs, as an NTP step or a corrected RTC does on a real
 * host. Monotonic time (performance.now, timers) and OpenSSL's clock (TLS certificate validity)
 * do not move, as they would not on a host whose wall clock is stepped. There is no faketime
 * here, and a fake Date inside the suite's own process would move the devcloud's and the
 * simulator's clock too, which is no jump relative to them at all.
 */
import { readFileSync } from "node:fs";

const file = process.env.KERF_CLOCK_SHIFT_FILE;
let shift = Number(process.env.KERF_CLOCK_SHIFT_MS ?? 0);
const read = () => {
  try {
    const n = Number(readFileSync(file!, "utf8").trim());
    if (Number.isFinite(n)) shift = n;
  } catch {
    // no file yet: no shift
  }
};
if (file) {
  read();
  setInterval(read, 100).unref();
}

const RealDate = Date;
class ShiftedDate extends RealDate {
  constructor(...args: unknown[]) {
    if (args.length === 0) super(RealDate.now() + shift);
    else super(...(args as [number]));
  }

  static override now(): number {
    return RealDate.now() + shift;
  }
}
globalThis.Date = ShiftedDate as DateConstructor;
