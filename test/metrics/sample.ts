/** The value of one sample line of Prometheus text, e.g. `kerf_values_dropped_total{reason="rejected"}`. */
export function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}
