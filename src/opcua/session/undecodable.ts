import type { EventEmitter } from "node:events";
import { decodeArray, decodeBoolean, decodeDateTime, decodeInt32, decodeNodeId, decodeExpandedNodeId, decodeStatusCode, decodeUInt16, decodeUInt32, decodeUInt8 } from "node-opcua-basic-types";
import { BinaryStream } from "node-opcua-binary-stream";
import {
  DataChangeNotification,
  DataValue,
  decodeDataValue,
  MonitoredItemNotification,
  NotificationMessage,
  PublishResponse,
  RepublishResponse,
  ResponseHeader,
  StatusCodes,
  type OPCUAClient,
  type StatusCode,
} from "node-opcua-client";
import { decodeExtensionObject } from "node-opcua-extension-object";
import { skipVariant } from "./skip.ts";
import { KerfError } from "../../errors.ts";

/*
 * Values node-opcua cannot decode, and the values they take along. node-opcua decodes a
 * notification (an ExtensionObject in a PublishResponse) with its errors swallowed: a value
 * nested deeper than it decodes (128 levels) or an array longer than it takes
 * (Variant.maxArrayLength) leaves the whole DataChangeNotification empty, logged only at its
 * debug level, and the response goes on as if it had decoded (node-opcua-extension-object,
 * decodeExtensionObject). Every value of that notification is lost, and its sequence number
 * is acknowledged, so no gap shows. A response whose decoding fails outside a notification
 * (a ReadResponse with such a value) is dropped with a warning ("invalid_message", which
 * nothing in node-opcua listens to), and its request waits for its timeout.
 *
 * Here the body of a (Re)PublishResponse in which node-opcua found an empty
 * DataChangeNotification is decoded again, value by value with node-opcua's own decoders; a
 * value that still fails is stepped over (skip.ts) and replaced by a null with
 * BadEncodingLimitsExceeded (BadDecodingError when it is broken rather than over a limit), and
 * the notification goes on with all its other values, before node-opcua hands it on. A
 * response that could not be decoded at all fails its request at once, as one the server
 * abandoned, instead of at its timeout.
 */

export interface UndecodableValue {
  /** The monitored item's client handle. */
  handle: number;
  /** BadEncodingLimitsExceeded or BadDecodingError: what the value was replaced with. */
  status: StatusCode;
  /** node-opcua's reason. */
  reason: string;
}

export interface UndecodableReport {
  /** The response type, e.g. PublishResponse. */
  service: string;
  /** Of a (Re)PublishResponse, when known. */
  subscriptionId?: number;
  sequenceNumber?: number;
  /** true: handed on with `values` replaced; false: the whole response is lost. */
  repaired: boolean;
  values: UndecodableValue[];
  /** Event or status notifications in a repaired response that had to be left out. */
  droppedNotifications: number;
}

interface MessageBuilderLike extends EventEmitter {
  sequenceHeader?: { requestId: number } | null;
  securityHeader?: unknown;
  channelId?: number;
}

/**
 * Repairs or fails at once the responses node-opcua cannot decode, on every secure channel
 * `client` opens from now on (each reconnection opens a new one). Call before connecting.
 */
export function repairUndecodableResponses(client: OPCUAClient, onReport: (report: UndecodableReport) => void): void {
  const watched = new WeakSet<object>();
  (client as unknown as EventEmitter).on("secure_channel_created", (channel: EventEmitter) => {
    // the channel makes its message builder when its transport connects; the first security
    // token comes right after, before any service request is sent
    channel.on("security_token_created", () => {
      const builder = (channel as unknown as { _getMessageBuilder?(): MessageBuilderLike | undefined })._getMessageBuilder?.();
      if (!builder || watched.has(builder)) return;
      watched.add(builder);
      watchBuilder(builder, onReport);
    });
  });
}

function watchBuilder(builder: MessageBuilderLike, onReport: (report: UndecodableReport) => void): void {
  // the body of the message being decoded: kept only until it has decoded (or not)
  let body: Buffer | null = null;
  builder.on("full_message_body", (b: Buffer) => (body = b));
  // before the secure channel's own listener, which hands the response on
  builder.prependListener("message", (response: unknown) => {
    const raw = body;
    body = null;
    if (!(response instanceof PublishResponse || response instanceof RepublishResponse)) return;
    const message = response.notificationMessage;
    if (!message?.notificationData?.some((n) => n instanceof DataChangeNotification && !n.monitoredItems?.length)) return;
    const subscriptionId = response instanceof PublishResponse ? response.subscriptionId : undefined;
    const service = response.schema.name;
    let repaired: Repaired | null = null;
    try {
      repaired = raw ? repairResponse(raw) : null;
    } catch {
      repaired = null;
    }
    if (!repaired) {
      onReport({ service, subscriptionId, sequenceNumber: message.sequenceNumber, repaired: false, values: [], droppedNotifications: 0 });
      return;
    }
    // an empty notification that was sent empty needs nothing
    if (repaired.values.length === 0 && repaired.droppedNotifications === 0) return;
    message.notificationData = repaired.response.notificationMessage.notificationData;
    onReport({ service, subscriptionId, sequenceNumber: message.sequenceNumber, repaired: true, values: repaired.values, droppedNotifications: repaired.droppedNotifications });
  });
  builder.on("invalid_message", (partial: { schema?: { name?: string } } | undefined) => {
    body = null;
    const requestId = builder.sequenceHeader?.requestId;
    if (requestId === undefined) return;
    onReport({ service: partial?.schema?.name ?? "response", repaired: false, values: [], droppedNotifications: 0 });
    try {
      builder.emit("abandon", requestId);
    } catch {
      // node-opcua's own handler threw: MessageBuilder swallows that too, with a warning
    }
  });
}

export interface Repaired {
  response: PublishResponse | RepublishResponse;
  subscriptionId?: number;
  sequenceNumber: number;
  values: UndecodableValue[];
  droppedNotifications: number;
}

/** A (Re)PublishResponse decoded value by value from its message body; null for any other response. Throws when it is broken beyond a value. */
export function repairResponse(body: Buffer): Repaired | null {
  const stream = new BinaryStream(body);
  const type = decodeExpandedNodeId(stream);
  if (type.namespace !== 0) return null;
  const repaired: Omit<Repaired, "response" | "sequenceNumber"> = { values: [], droppedNotifications: 0 };
  if (type.value === (PublishResponse.encodingDefaultBinary.value as number)) {
    const response = new PublishResponse(null as never);
    response.responseHeader = decodeResponseHeader(stream);
    response.subscriptionId = decodeUInt32(stream);
    response.availableSequenceNumbers = decodeArray(stream, decodeUInt32) ?? [];
    response.moreNotifications = decodeBoolean(stream);
    response.notificationMessage = decodeNotificationMessage(stream, body, repaired);
    response.results = decodeArray(stream, decodeStatusCode) ?? [];
    // the diagnostics come last and Kerf does not use them
    response.diagnosticInfos = [];
    return { ...repaired, response, subscriptionId: response.subscriptionId, sequenceNumber: response.notificationMessage.sequenceNumber };
  }
  if (type.value === (RepublishResponse.encodingDefaultBinary.value as number)) {
    const response = new RepublishResponse(null as never);
    response.responseHeader = decodeResponseHeader(stream);
    response.notificationMessage = decodeNotificationMessage(stream, body, repaired);
    return { ...repaired, response, sequenceNumber: response.notificationMessage.sequenceNumber };
  }
  return null;
}

function decodeResponseHeader(stream: BinaryStream): ResponseHeader {
  const header = new ResponseHeader();
  header.decode(stream);
  return header;
}

function decodeNotificationMessage(stream: BinaryStream, body: Buffer, repaired: Pick<Repaired, "values" | "droppedNotifications">): NotificationMessage {
  const message = new NotificationMessage(null as never);
  message.sequenceNumber = decodeUInt32(stream);
  message.publishTime = decodeDateTime(stream);
  message.notificationData = [];
  const count = arrayLength(stream);
  for (let i = 0; i < count; i++) {
    // an ExtensionObject: its type, its encoding, and (binary) its body's length
    const start = stream.length;
    const type = decodeNodeId(stream);
    const encoding = decodeUInt8(stream);
    if (encoding === 0) continue;
    if (encoding !== 1) throw new KerfError("OPCUA_DECODE", `a notification encoded as ${encoding}`);
    const length = decodeInt32(stream);
    const end = stream.length + length;
    if (length < 0 || end > body.length) throw new KerfError("OPCUA_DECODE", "a notification longer than the message");
    if (type.namespace === 0 && type.value === (DataChangeNotification.encodingDefaultBinary.value as number)) {
      message.notificationData.push(decodeDataChanges(stream, body, end, repaired.values));
    } else {
      // events and status changes: node-opcua's decoder, or left out
      stream.length = start;
      try {
        message.notificationData.push(decodeExtensionObject(stream) as never);
      } catch {
        repaired.droppedNotifications++;
      }
    }
    stream.length = end;
  }
  return message;
}

function decodeDataChanges(stream: BinaryStream, body: Buffer, end: number, bad: UndecodableValue[]): DataChangeNotification {
  const notification = new DataChangeNotification(null as never);
  notification.monitoredItems = [];
  notification.diagnosticInfos = [];
  const count = arrayLength(stream);
  for (let i = 0; i < count; i++) {
    const item = new MonitoredItemNotification(null as never);
    item.clientHandle = decodeUInt32(stream);
    const at = stream.length;
    try {
      item.value = decodeDataValue(stream);
    } catch (err) {
      stream.length = at;
      const reason = err instanceof Error ? err.message : String(err);
      const status = /nesting|maxArrayLength|maxTypedArrayLength|exceed/i.test(reason) ? StatusCodes.BadEncodingLimitsExceeded : StatusCodes.BadDecodingError;
      item.value = skipDataValue(stream, body, end, status);
      bad.push({ handle: item.clientHandle, status, reason });
    }
    notification.monitoredItems.push(item);
  }
  return notification;
}

/** Steps over a DataValue whose Variant does not decode; its status and timestamps are kept, its value replaced by `status`. */
function skipDataValue(stream: BinaryStream, body: Buffer, end: number, status: StatusCode): DataValue {
  const mask = decodeUInt8(stream);
  if (mask & 0x01) stream.length = skipVariant(body, stream.length, end);
  const own = mask & 0x02 ? decodeStatusCode(stream) : StatusCodes.Good;
  const sourceTimestamp = mask & 0x04 ? decodeDateTime(stream) : null;
  if (mask & 0x10) decodeUInt16(stream);
  const serverTimestamp = mask & 0x08 ? decodeDateTime(stream) : null;
  if (mask & 0x20) decodeUInt16(stream);
  // a Bad status of the server's own says more than ours
  return new DataValue({ statusCode: own.isBad() ? own : status, sourceTimestamp, serverTimestamp });
}

function arrayLength(stream: BinaryStream): number {
  const n = decodeInt32(stream);
  if (n <= 0) return 0;
  // every element takes a byte at least
  if (n > stream.buffer.length - stream.length) throw new KerfError("OPCUA_DECODE", `an array of ${n} in ${stream.buffer.length - stream.length} bytes`);
  return n;
}
