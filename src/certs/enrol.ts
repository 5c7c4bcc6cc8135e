/**
 * The bootstrap: the first enrolment of an instance over EST with a one-time token, for
 * `kerf enroll` at installation and for `kerf run` on a first start without a certificate.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { Secret } from "../config/secrets.ts";
import { KerfError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { ProxySettings } from "../uplink/proxy.ts";
import { Transport } from "../uplink/transport.ts";
import { EstClient } from "./est.ts";
import { writeFileAtomic } from "./files.ts";
import { ensureIdentity, identityPaths, loadIdentity, type Identity } from "./identity.ts";
import type { KeyType } from "./x509.ts";

export interface BootstrapOptions {
  dir: string;
  instance: string;
  /** The EST base URL. */
  url: string;
  /** The file with the one-time bootstrap token; undefined when none is configured. */
  tokenFile: string | undefined;
  keyType: KeyType;
  pins: readonly string[];
  caPem: string | undefined;
  /** The HTTP CONNECT proxy to the cloud (cloud.proxy or HTTPS_PROXY), or null for a direct connection. */
  proxy?: ProxySettings | null | undefined;
  /**
   * Present a token the cloud refused before (kerf enroll, an operator's deliberate retry).
   * Without it (kerf run) such a token is not sent again, so that a restart loop does not use
   * up the attempts before the cloud's lockout.
   */
  retryRefusedToken?: boolean;
  logger: Logger;
}

const RECOVER = "ask the cloud administrator for a new bootstrap token (devcloud: kerf devcloud --issue-token INSTANCE) and run kerf enroll --token-file FILE";

/**
 * The identity in `dir`, enrolling over EST first when there is no usable certificate. A token
 * already spent by this instance is not presented again (every refusal counts towards the
 * cloud's lockout), and an expired certificate says how to come back.
 */
export async function bootstrapIdentity(o: BootstrapOptions): Promise<Identity> {
  const files = identityPaths(o.dir);
  const found = existsSync(files.key) ? loadIdentity(o.dir, o.instance, o.logger) : { problem: "no identity yet" };
  if ("certPem" in found) return found;
  const expired = "expiredAt" in found && found.expiredAt ? `the instance certificate ${files.cert} expired on ${found.expiredAt.toISOString()}; ` : "";
  if (o.tokenFile === undefined) {
    throw new KerfError(expired ? "CERT_EXPIRED" : "CERT_ENROLMENT", `${expired || `instance '${o.instance}' has no certificate yet (${found.problem}); `}enrolment needs a bootstrap token: ${RECOVER}, or set cloud.enrolment.tokenFile`);
  }
  const token = readToken(o.tokenFile);
  const tokenHash = createHash("sha256").update(token.reveal()).digest("hex");
  if (existsSync(files.usedToken) && readFileSync(files.usedToken, "utf8").trim() === tokenHash) {
    throw new KerfError(expired ? "CERT_EXPIRED" : "CERT_ENROLMENT", `${expired}the bootstrap token in ${o.tokenFile} was already used by this instance and is not presented again: ${RECOVER}`);
  }
  const refused = existsSync(files.refusedToken) ? readFileSync(files.refusedToken, "utf8").split("\n") : [];
  if (!o.retryRefusedToken && refused[0] === tokenHash) {
    throw new KerfError(
      expired ? "CERT_EXPIRED" : "CERT_ENROLMENT",
      `${expired}the cloud refused the bootstrap token in ${o.tokenFile} at an earlier start (${refused[1] ?? "no reason kept"}); kerf run does not present it again, so that restarts do not use up the attempts before lockout: ${RECOVER}`,
    );
  }
  const transport = new Transport({ pins: o.pins, caPem: o.caPem, proxy: o.proxy ?? null, logger: o.logger, connections: 1 });
  const enroll = async (est: EstClient, csrPem: string): Promise<string> => {
    let issued: string;
    try {
      issued = await est.enroll(csrPem, { username: o.instance, token });
    } catch (err) {
      // The cloud judged the token (401, 403): remember it, with the reason, by its hash only.
      if (err instanceof KerfError && err.details.some((d) => /^status 40[13]$/.test(d))) writeFileAtomic(files.refusedToken, `${tokenHash}\n${err.message.replace(/\s+/g, " ")}\n`, 0o600);
      throw err;
    }
    // The cloud has spent the token now, whether or not the certificate passes our checks.
    writeFileAtomic(files.usedToken, tokenHash + "\n", 0o600);
    return issued;
  };
  try {
    const est = new EstClient({ url: o.url, dispatcher: transport });
    return await ensureIdentity({
      dir: o.dir,
      instance: o.instance,
      keyType: o.keyType,
      logger: o.logger,
      enroller: { enroll: (csrPem) => enroll(est, csrPem) },
    });
  } catch (err) {
    if (expired && err instanceof KerfError) throw new KerfError("CERT_EXPIRED", `${expired}${err.message}`, { cause: err });
    throw err;
  } finally {
    await transport.close().catch(() => undefined);
  }
}

function readToken(file: string): Secret {
  let text: string;
  try {
    text = readFileSync(file, "utf8").trim();
  } catch (err) {
    throw new KerfError("SECRET_MISSING", `cannot read the bootstrap token file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (text === "" || /[\s:]/.test(text)) throw new KerfError("SECRET_MISSING", `the bootstrap token file ${file} does not hold one token (expected a single line without spaces or ':')`);
  return new Secret(text);
}
