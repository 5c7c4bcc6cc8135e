import { describe, expect, it } from "vitest";
import { KerfError } from "../../../src/errors.ts";
import { describeConnectError, securityRefusal } from "../../../src/opcua/session/connect-errors.ts";
import type { EndpointSpec } from "../../../src/opcua/types.ts";
import { endpointSpec } from "../../helpers/opcua.ts";

const spec: EndpointSpec = endpointSpec({ endpointUrl: "opc.tcp://plc.example:4840" }, { machine: "press-1" });

describe("describeConnectError", () => {
  it("passes Kerf's own refusal for this endpoint on as it is: the error says which endpoint it is about", () => {
    expect(describeConnectError(securityRefusal(spec, "the server offers no Anonymous user token"), spec)).toBe(
      "press-1 (opc.tcp://plc.example:4840): the server offers no Anonymous user token",
    );
  });

  it("decides by the error's context, not by its text: the same words about another machine are not taken as this one's", () => {
    const other = new KerfError("OPCUA_SECURITY", "press-1 (opc.tcp://plc.example:4840): looks like ours", { context: { machine: "press-2", endpoint: "opc.tcp://plc.example:4840" } });
    expect(describeConnectError(other, spec)).toBe("press-1 (opc.tcp://plc.example:4840): press-1 (opc.tcp://plc.example:4840): looks like ours");
  });
});
