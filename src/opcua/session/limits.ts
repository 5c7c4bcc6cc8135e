/**
 * Bounds on what a server can make the connector hold. The connector is the OPC UA client,
 * so a broken or malicious server is its attack surface: every size it sends is untrusted.
 *
 * Two layers:
 * - the transport (here): how large a chunk and a message may be before node-opcua has to
 *   buffer and decode them; past that the channel is closed with BadTcpMessageTooLarge;
 * - the values (`VALUE_LIMITS`, applied by encode.ts): a decoded value that would be too
 *   large for the cloud is forwarded as null with BadEncodingLimitsExceeded.
 */
import type { StatusCode } from "node-opcua-status-code";
import { ClientTCP_transport, type IClientTransport, type IClientTransportFactory, type TransportSettingsOptions } from "node-opcua-transport";

export interface TransportLimits {
  /** Largest message chunk we accept (and announce as our receive buffer). */
  receiveBufferSize: number;
  /** Largest chunk we send; the server may ask for smaller. */
  sendBufferSize: number;
  /** Largest whole message (all chunks) we accept. */
  maxMessageSize: number;
  /** Most chunks per message. */
  maxChunkCount: number;
}

/**
 * 16 MiB per message is what node-opcua servers already allow a client that states no limit,
 * and it holds the first publish of 100,000 monitored items (about 4 MB) with room to spare.
 * 512 KiB chunks are the largest a node-opcua server agrees to, so throughput is unchanged.
 * 2,048 chunks let a server that uses the smallest legal chunk (8 KiB) still fill a message.
 * A message costs about three times its size while it is reassembled and decoded.
 */
export const TRANSPORT_LIMITS: Readonly<TransportLimits> = Object.freeze({
  receiveBufferSize: 512 * 1024,
  sendBufferSize: 512 * 1024,
  maxMessageSize: 16 * 1024 * 1024,
  maxChunkCount: 2048,
});

/**
 * Options for `OPCUAClient.create` that bound what the server can make the client buffer:
 * spread them into the options (`OPCUAClient.create({ ...clientTransportLimits(), ... })`).
 *
 * `transportSettings` alone is not enough. node-opcua announces it in its Hello, which a
 * well-behaved server respects, but then enforces the limits the server sends back in its
 * Acknowledge. A rogue server that answers with a huge receive buffer and no message limit
 * could make the client buffer one chunk of up to 4 GB. The transport factory keeps our own
 * limits in force whatever the Acknowledge says.
 *
 * node-opcua reports a refused message only as "Connection Break"; `onAbort` gets the real
 * reason (e.g. "BadTcpMessageTooLarge: max message size exceeded: …") to log or show.
 */
export function clientTransportLimits(
  onAbort?: (reason: string) => void,
  limits: TransportLimits = TRANSPORT_LIMITS,
): {
  transportSettings: TransportSettingsOptions;
  transportFactory: IClientTransportFactory;
} {
  const settings: TransportSettingsOptions = { ...limits };
  return {
    transportSettings: settings,
    transportFactory: { create: (s?: TransportSettingsOptions): IClientTransport => new BoundedTcpTransport(limits, s ?? settings, onAbort) },
  };
}

/** node-opcua's TCP transport, with the server's Acknowledge unable to raise our receive limits. */
class BoundedTcpTransport extends ClientTCP_transport {
  readonly #limits: TransportLimits;
  readonly #onAbort: ((reason: string) => void) | undefined;

  constructor(limits: TransportLimits, settings: TransportSettingsOptions, onAbort?: (reason: string) => void) {
    super(settings);
    this.#limits = limits;
    this.#onAbort = onAbort;
  }

  override prematureTerminate(err: Error, statusCode: StatusCode): void {
    if (this.#onAbort) {
      const reason = `${statusCode.name}: ${err.message.replace(/^premature socket termination /, "").trim()}`;
      try {
        this.#onAbort(reason);
      } catch {
        // a failing observer must not stop the socket from being torn down
      }
    }
    super.prematureTerminate(err, statusCode);
  }

  override setLimits(ack: { receiveBufferSize: number; sendBufferSize: number; maxMessageSize: number; maxChunkCount: number }): void {
    const own = this.#limits;
    super.setLimits({
      // node-opcua takes the incoming chunk limit from this field; a conforming server sends
      // chunks no larger than the receive buffer we announced
      receiveBufferSize: own.receiveBufferSize,
      sendBufferSize: ack.sendBufferSize,
      // these also bound what we send, so the server's smaller value wins; 0 means "no limit"
      maxMessageSize: minLimit(own.maxMessageSize, ack.maxMessageSize),
      maxChunkCount: minLimit(own.maxChunkCount, ack.maxChunkCount),
    });
  }
}

function minLimit(own: number, theirs: number): number {
  return theirs > 0 ? Math.min(own, theirs) : own;
}

export interface ValueLimits {
  /** Largest JSON encoding of one value, in UTF-8 bytes. */
  maxItemBytes: number;
  /** Longest string (also a ByteString's base64 text), in UTF-16 code units. */
  maxStringLength: number;
  /** Most elements in one array, or fields in one structure. */
  maxArrayLength: number;
  /** Deepest nesting of variants, structures and arrays; a scalar is depth 0. */
  maxDepth: number;
}

/**
 * 64 KiB per value keeps one bad value far below the cloud's 16 MB body limit and the
 * buffer's batch sizes. The string and array limits are the same bound, checked before any
 * copy: a longer string or array cannot encode into 64 KiB. 32 levels is far beyond any real
 * structure, and below node-opcua's own decoding limit of 128. A deeper value, or an array
 * longer than node-opcua decodes (Variant.maxArrayLength, 1,048,576), empties the whole
 * notification that carries it inside node-opcua; undecodable.ts recovers the others and sends
 * it as null with BadEncodingLimitsExceeded, as if it had reached us. A matrix nests one level
 * per dimension (encode.ts), so its dimensions count against the depth.
 */
export const VALUE_LIMITS: Readonly<ValueLimits> = Object.freeze({
  maxItemBytes: 64 * 1024,
  maxStringLength: 64 * 1024,
  maxArrayLength: 32 * 1024,
  maxDepth: 32,
});
