/**
 * Every failure that a user or operator can act on is a KerfError with a stable code.
 * Callers match on `code`, never on the message text.
 */
export type KerfErrorCode =
  | "CONFIG_INVALID"
  | "CONFIG_NOT_FOUND"
  | "SECRET_MISSING"
  | "MAPPING_INVALID"
  | "OPCUA_CONNECT"
  | "OPCUA_SECURITY"
  | "OPCUA_UNTRUSTED_CERT"
  | "OPCUA_NODE"
  | "UPLINK_PIN_MISMATCH"
  | "UPLINK_NO_CLIENT_CERT"
  | "UPLINK_TLS"
  | "UPLINK_HTTP"
  | "UPLINK_NETWORK"
  | "UPLINK_CLOSED"
  | "BUFFER_IO"
  | "CERT_INVALID"
  | "CERT_KEY_MISMATCH"
  | "STATE_DIR"
  | "DEV_COMMAND"
  | "USAGE";

export class KerfError extends Error {
  readonly code: KerfErrorCode;
  /** Extra lines for the user, e.g. one per config error. */
  readonly details: readonly string[];
  constructor(code: KerfErrorCode, message: string, options: { cause?: unknown; details?: readonly string[] } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "KerfError";
    this.code = code;
    this.details = options.details ?? [];
  }
}

export function isKerfError(err: unknown, code?: KerfErrorCode): err is KerfError {
  return err instanceof KerfError && (code === undefined || err.code === code);
}
