import { encodeExpandedNodeId } from "node-opcua-basic-types";
import { BinaryStream } from "node-opcua-binary-stream";
import {
  DataChangeNotification,
  DataType,
  DataValue,
  MonitoredItemNotification,
  NotificationMessage,
  PublishResponse,
  RepublishResponse,
  StatusChangeNotification,
  StatusCodes,
  Variant,
  VariantArrayType,
} from "node-opcua-client";
import { describe, expect, it } from "vitest";
import { repairResponse } from "../../src/opcua/session/undecodable.ts";

function nested(depth: number): Variant {
  let v = new Variant({ dataType: DataType.Int32, value: 7 });
  for (let i = 0; i < depth; i++) v = new Variant({ dataType: DataType.Variant, arrayType: VariantArrayType.Array, value: [v] });
  return v;
}

/** A response as it arrives in a message body: its encoding's id, then its fields. */
function body(response: PublishResponse | RepublishResponse): Buffer {
  const stream = new BinaryStream(64 * 1024);
  encodeExpandedNodeId(response.schema.encodingDefaultBinary!, stream);
  response.encode(stream);
  return stream.buffer.subarray(0, stream.length);
}

const t = new Date("2026-11-23T12:00:00.125Z");
const item = (clientHandle: number, value: Variant, statusCode = StatusCodes.Good) =>
  new MonitoredItemNotification({ clientHandle, value: new DataValue({ value, statusCode, sourceTimestamp: t, serverTimestamp: t }) });

function message(sequenceNumber: number): NotificationMessage {
  return new NotificationMessage({
    sequenceNumber,
    publishTime: t,
    notificationData: [
      new DataChangeNotification({
        monitoredItems: [
          item(101, new Variant({ dataType: DataType.UInt32, value: 1 })),
          item(102, nested(200)),
          item(103, new Variant({ dataType: DataType.String, value: "after" })),
          item(104, nested(300), StatusCodes.BadSensorFailure),
        ],
      }),
      new StatusChangeNotification({ status: StatusCodes.GoodSubscriptionTransferred }),
    ],
  });
}

describe("a publish response node-opcua cannot decode", () => {
  it("decodes to an empty notification in node-opcua, and value by value here", () => {
    const wire = body(new PublishResponse({ subscriptionId: 9, availableSequenceNumbers: [41, 42], moreNotifications: true, notificationMessage: message(42), results: [StatusCodes.Good] }));
    // what node-opcua's MessageBuilder makes of it: the response decodes, its data changes are gone
    const stream = new BinaryStream(wire);
    stream.length = 4; // past the type id (four-byte NodeId form)
    const asNodeOpcua = new PublishResponse();
    asNodeOpcua.decode(stream);
    expect(asNodeOpcua.notificationMessage.sequenceNumber).toBe(42);
    expect((asNodeOpcua.notificationMessage.notificationData![0] as DataChangeNotification).monitoredItems).toEqual([]);

    const repaired = repairResponse(wire)!;
    expect(repaired.subscriptionId).toBe(9);
    expect(repaired.sequenceNumber).toBe(42);
    const response = repaired.response as PublishResponse;
    expect(response).toBeInstanceOf(PublishResponse);
    expect(response.availableSequenceNumbers).toEqual([41, 42]);
    expect(response.moreNotifications).toBe(true);
    expect(response.results!.map((s) => s.name)).toEqual(["Good"]);
    const [changes, status] = response.notificationMessage.notificationData!;
    expect(status).toBeInstanceOf(StatusChangeNotification);
    const items = (changes as DataChangeNotification).monitoredItems!;
    expect(items.map((i) => i.clientHandle)).toEqual([101, 102, 103, 104]);
    expect(items[0]!.value.value.value).toBe(1);
    expect(items[2]!.value.value.value).toBe("after");
    // the one that does not decode: no value, our status, the server's timestamps
    expect(items[1]!.value.value.dataType).toBe(DataType.Null);
    expect(items[1]!.value.statusCode).toBe(StatusCodes.BadEncodingLimitsExceeded);
    expect(items[1]!.value.sourceTimestamp).toEqual(t);
    // a server's own Bad status stays
    expect(items[3]!.value.statusCode).toBe(StatusCodes.BadSensorFailure);
    expect(repaired.values.map((v) => [v.handle, v.status.name])).toEqual([
      [102, "BadEncodingLimitsExceeded"],
      [104, "BadEncodingLimitsExceeded"],
    ]);
    expect(repaired.values[0]!.reason).toMatch(/nesting/);
    expect(repaired.droppedNotifications).toBe(0);
  });

  it("as a RepublishResponse too", () => {
    const repaired = repairResponse(body(new RepublishResponse({ notificationMessage: message(7) })))!;
    expect(repaired.response).toBeInstanceOf(RepublishResponse);
    expect(repaired.sequenceNumber).toBe(7);
    expect(repaired.values.map((v) => v.handle)).toEqual([102, 104]);
  });

  it("gives up on a body that is broken beyond a value, and leaves other responses alone", () => {
    const wire = body(new PublishResponse({ subscriptionId: 9, notificationMessage: message(42) }));
    expect(() => repairResponse(wire.subarray(0, wire.length - 40))).toThrow();
    expect(repairResponse(Buffer.from([0x01, 0x00, 0x7a, 0x02]))).toBeNull(); // a ReadResponse (i=634)
  });
});
