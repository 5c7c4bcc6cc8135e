/**
 * Every failure that a user or operator can act on is a KerfError with a stable code.
 * Callers match on `code` and `context`, never on the message text.
 */
export type KerfErrorCode =
  | "CONFIG_INVALID"
  | "CONFIG_NOT_FOUND"
  | "SECRET_MISSING"
  | "MAPPING_INVALID"
  | "OPCUA_CONNECT"
  | "OPCUA_SECURITY"
  | "OPCUA_UNTRUSTED_CERT"
  /** The connector's own OPC UA application certificate has expired (kerf pki renew). */
  | "OPCUA_OWN_CERT_EXPIRED"
  | "OPCUA_NODE"
  /** The server sent what OPC UA or its own type definitions do not allow. */
  | "OPCUA_DECODE"
  /** The server answered a service call with the wrong number of results. */
  | "OPCUA_PROTOCOL"
  | "UPLINK_PIN_MISMATCH"
  | "UPLINK_NO_CLIENT_CERT"
  | "UPLINK_TLS"
  | "UPLINK_NETWORK"
  | "UPLINK_CLOSED"
  /** The proxy cannot be reached, or could not open the tunnel to the cloud (5xx, a reset). */
  | "UPLINK_PROXY"
  /** The proxy refused the tunnel to the cloud by its policy (403 and other 4xx). */
  | "UPLINK_PROXY_REFUSED"
  /** The proxy demands authentication, or refused our credentials (407). */
  | "UPLINK_PROXY_AUTH"
  /** No access token from the authorization server (cloud.auth): the issuer and its error say why. */
  | "AUTH_TOKEN"
  | "BUFFER_IO"
  /** A stored batch that cannot be read back. */
  | "BUFFER_CORRUPT"
  | "BUFFER_CLOSED"
  /** The buffer's encryption key is missing, wrong, or unusable (the file is refused, nothing is dropped). */
  | "BUFFER_KEY"
  /** Not a certificate, key, CRL or certificate request that parses. */
  | "CERT_MALFORMED"
  /** A certificate or key file that cannot be read, or a CA with half its files. */
  | "CERT_FILE"
  | "CERT_KEY_MISMATCH"
  /** A certificate or key that parses but that Kerf cannot use (key type, missing names). */
  | "CERT_UNSUITABLE"
  /** What was asked of the dev CA cannot be issued. */
  | "CERT_REQUEST_INVALID"
  /** No instance certificate, and enrolment failed or returned an unusable one. */
  | "CERT_ENROLMENT"
  /** The instance certificate has expired: only a new bootstrap enrolment brings it back. */
  | "CERT_EXPIRED"
  /** The OPC UA trust store does not take a certificate or CRL (not a CA, no issuer, older). */
  | "TRUST_REFUSED"
  /** The OPC UA trust store could not be changed on disk. */
  | "TRUST_STORE_WRITE"
  | "STATE_DIR"
  /** An app bundle handed to the launcher does not have the shape of one (entry point, version). */
  | "UPDATE_BUNDLE"
  /** Copying an app bundle into its slot failed (e.g. the disk is full); the running version stays. */
  | "UPDATE_STAGING"
  /** The launcher's record of the active and previous slots cannot be read or written. */
  | "UPDATE_STATE"
  | "DEV_COMMAND"
  | "TIMEOUT"
  /** An internal limit or invariant that should never be reached. */
  | "INTERNAL"
  /** The release tooling cannot build, sign or publish (missing keys, a threshold it cannot meet, a bad bundle). */
  | "RELEASE"
  /** The update channel refused what it was offered (TUF verification, anti-rollback) or could not be reached. */
  | "UPDATE"
  /** The pinned command-signing keys (commands.keys) cannot be read or used. */
  | "COMMAND_KEYS"
  /** The command replay store or audit log cannot be opened, read or written. */
  | "COMMAND_STORE"
  | "USAGE";

/** What the error is about, for whoever matches on it (health, logs, explanations). */
export interface KerfErrorContext {
  machine?: string;
  endpoint?: string;
  host?: string;
  /** The proxy's URL, without credentials. */
  proxy?: string;
}

export class KerfError extends Error {
  readonly code: KerfErrorCode;
  /** Extra lines for the user, e.g. one per config error. */
  readonly details: readonly string[];
  readonly context: Readonly<KerfErrorContext>;
  constructor(code: KerfErrorCode, message: string, options: { cause?: unknown; details?: readonly string[]; context?: KerfErrorContext } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "KerfError";
    this.code = code;
    this.details = options.details ?? [];
    this.context = options.context ?? {};
  }
}

export function isKerfError(err: unknown, code?: KerfErrorCode): err is KerfError {
  return err instanceof KerfError && (code === undefined || err.code === code);
}
