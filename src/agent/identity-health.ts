import type { RenewalHealth } from "../certs/renewal.ts";
import type { TokenHealth } from "../uplink/tokens.ts";
import type { Problem } from "./part.ts";

/** A renewal due longer ago than this has not started: its loop is stuck (a timer fires late only on a blocked event loop). */
export const RENEWAL_OVERDUE_MS = 60_000;

/**
 * What keeps the identity and the tokens from doing their job (issue 17: "the certificate and
 * token are valid", and their loops alive). An expired certificate is judged where it is known
 * (uplink-part.ts); renewals that fail while the old certificate or token still works are warnings.
 */
export function identityProblems(part: string, now: number, certificate: RenewalHealth | null, tokens: TokenHealth | null): Problem[] {
  const problems: Problem[] = [];
  const overdue = (at: number | null, renewing: boolean) => (at === null || renewing ? 0 : now - at);
  if (certificate && !certificate.expired) {
    const late = overdue(certificate.nextRenewalAt === null ? null : Date.parse(certificate.nextRenewalAt), certificate.renewing);
    if (late > RENEWAL_OVERDUE_MS) {
      problems.push({ part, reason: `the certificate renewal due at ${certificate.nextRenewalAt} has not started (${Math.round(late / 1000)} s overdue)`, code: "CERT_RENEWAL_STALLED" });
    }
  }
  if (tokens) {
    const valid = tokens.expiresAt !== null && tokens.expiresAt > now;
    if (!valid && tokens.lastError) {
      const which = tokens.expiresAt === null ? "no access token yet" : `the access token expired at ${new Date(tokens.expiresAt).toISOString()}`;
      problems.push({ part, reason: `${which} and fetching one fails: ${tokens.lastError}`, code: "AUTH_TOKEN" });
    }
    const late = overdue(tokens.nextRenewalAt, tokens.renewing);
    if (late > RENEWAL_OVERDUE_MS) {
      problems.push({ part, reason: `the token renewal due at ${new Date(tokens.nextRenewalAt!).toISOString()} has not started (${Math.round(late / 1000)} s overdue)`, code: "AUTH_TOKEN_STALLED" });
    }
  }
  return problems;
}
