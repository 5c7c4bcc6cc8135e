import type { KeyObject } from "node:crypto";
import { inspect } from "node:util";

const REDACTED = "[redacted]";

/**
 * A secret read from a file or the environment. Every way an object usually becomes text
 * (template strings, JSON.stringify, util.inspect, console.log, pino) yields "[redacted]",
 * so a secret cannot reach a log by accident; `reveal()` is the one deliberate way out.
 */
export class Secret<T = string> {
  readonly #value: T;

  constructor(value: T) {
    this.#value = value;
  }

  reveal(): T {
    return this.#value;
  }

  toString(): string {
    return REDACTED;
  }

  toJSON(): string {
    return REDACTED;
  }

  [inspect.custom](): string {
    return REDACTED;
  }
}

/** The secrets a loaded config carries, keyed by machine id: the OPC UA password, or the user certificate and its key. */
export interface Secrets {
  machines: Record<string, { password?: Secret; userCertificatePem?: string; userPrivateKey?: Secret }>;
  /** Basic authentication at the cloud proxy (cloud.proxy.usernameFile, passwordFile). */
  proxy?: { username: Secret; password: Secret };
  /** The buffer's encryption key (buffer.encryption.keyFile), 32 bytes. */
  bufferKey?: Secret<KeyObject>;
}
