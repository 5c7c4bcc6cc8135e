/** How config values and paths are shown in error messages: short, quoted, escaped. */

const MAX_SHOWN = 60;

export function truncate(text: string, max = MAX_SHOWN): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** A value as the user wrote it, for "(found …)". JSON quoting escapes control characters, so a value cannot restyle the terminal. */
export function found(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "an empty value";
  if (typeof value === "string") return JSON.stringify(truncate(value));
  if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint") return String(value);
  if (Array.isArray(value)) return `a list of ${value.length} item${value.length === 1 ? "" : "s"}`;
  if (typeof value === "object") {
    const keys = Object.keys(value);
    return keys.length === 0 ? "an empty mapping" : `a mapping with keys ${truncate(keys.map(quoteKey).join(", "))}`;
  }
  return typeof value;
}

const PLAIN_KEY = /^[A-Za-z0-9_][A-Za-z0-9_-]*$/;

export function quoteKey(key: string): string {
  return PLAIN_KEY.test(key) ? key : JSON.stringify(truncate(key, 40));
}

/** ["machines", 0, "user", "passwordFile"] → "machines[0].user.passwordFile". */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else {
      const key = quoteKey(String(seg));
      out += out === "" ? key : `.${key}`;
    }
  }
  return out;
}
