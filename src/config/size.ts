/** Byte sizes in config: a number of bytes, or a string such as "512MiB" or "2GB". */

const UNITS: Record<string, number> = {
  B: 1,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
  KB: 1000,
  MB: 1000 ** 2,
  GB: 1000 ** 3,
};

export const SIZE_FORMAT = "a number of bytes, or a string like 512MiB (units B, KiB, MiB, GiB, or KB, MB, GB = powers of 1000)";

/** The form of a size string; the unit is checked against UNITS by parseSize. */
export const SIZE_PATTERN = /^\s*\d+(?:\.\d+)?\s*(?:B|KiB|MiB|GiB|KB|MB|GB)\s*$/;
const SIZE = /^(\d+(?:\.\d+)?)\s*([A-Za-z]+)$/;

/** Parses "1GiB", "1.5 MB", "100B"; returns undefined when the text is not a size. */
export function parseSize(text: string): number | undefined {
  const m = SIZE.exec(text.trim());
  if (!m) return undefined;
  const unit = UNITS[m[2]!];
  if (unit === undefined) return undefined;
  // Fractions are allowed ("1.5GiB"); the result is rounded down to whole bytes.
  return Math.floor(Number(m[1]) * unit);
}

/** 1073741824 → "1 GiB"; used in messages so that limits read like the config. */
export function formatSize(bytes: number): string {
  for (const unit of ["GiB", "MiB", "KiB"] as const) {
    const n = bytes / UNITS[unit]!;
    if (n >= 1 && Number.isInteger(n)) return `${n} ${unit}`;
  }
  return `${bytes} B`;
}
