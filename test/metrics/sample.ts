/**
 * The value of one sample line of Prometheus text, e.g. `kerf_values_dropped_total{reason="rejected"}`;
 * the label every series carries (kerf_instance) is left out of the comparison.
 */
export function sample(text: string, series: string): number | undefined {
  const line = text
    .split("\n")
    .map((l) => l.replace(/,?kerf_instance="[^"]*"/, "").replace("{}", "").replace("{,", "{"))
    .find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}
