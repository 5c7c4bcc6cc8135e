import { readFileSync, unwatchFile, watchFile, type Stats } from "node:fs";

/**
 * The server refused the user identity itself: the same credentials will be refused again, and
 * machines lock an account after a few failed logins. BadUserSignatureInvalid (a user
 * certificate whose key does not match) is included: retrying cannot fix it either.
 */
const REJECTED = /\b(BadUserAccessDenied|BadIdentityTokenRejected|BadIdentityTokenInvalid|BadUserSignatureInvalid)\b/;

/** The refusal's status name, when `err` is the server refusing the credentials. */
export function credentialsRejection(err: unknown): string | null {
  const message = err instanceof Error ? err.message : String(err);
  return REJECTED.exec(message)?.[1] ?? null;
}

/** The first wait after refused credentials, doubled at each refusal up to the maximum. */
export const CREDENTIALS_BACKOFF = { initialMs: 60_000, maxMs: 30 * 60_000 } as const;

/** 1, 2, 4 … 30 minutes after the 1st, 2nd, 3rd … refusal in a row. No jitter: the next attempt is announced. */
export function credentialsBackoffMs(refusals: number): number {
  return Math.min(CREDENTIALS_BACKOFF.initialMs * 2 ** Math.max(0, refusals - 1), CREDENTIALS_BACKOFF.maxMs);
}

/** The password in `file` as the config loader reads it (one trailing newline is not part of it); null when unreadable or empty. */
export function readPasswordFile(file: string): string | null {
  try {
    const password = readFileSync(file, "utf8").replace(/\r?\n$/, "");
    return password === "" ? null : password;
  } catch {
    return null;
  }
}

/**
 * Calls `onChange` when `file` changes (content replaced, renamed over, a Kubernetes secret's
 * symlink swapped). Polls its status by path, which survives all of those, unlike an inotify
 * watch on the file itself. Returns a function that stops watching.
 */
export function watchSecretFile(file: string, onChange: () => void, intervalMs = 1_000): () => void {
  const listener = (now: Stats, before: Stats) => {
    if (now.mtimeMs !== before.mtimeMs || now.size !== before.size || now.ino !== before.ino) onChange();
  };
  watchFile(file, { interval: intervalMs, persistent: false }, listener);
  return () => unwatchFile(file, listener);
}
