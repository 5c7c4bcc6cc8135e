import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { parseNodeIdString } from "../../src/config/nodeid.ts";
import { isKerfError } from "../../src/errors.ts";

function message(text: string): string {
  try {
    parseNodeIdString(text);
  } catch (err) {
    expect(isKerfError(err, "MAPPING_INVALID")).toBe(true);
    return (err as Error).message;
  }
  throw new Error(`expected '${text}' to be refused`);
}

describe("parseNodeIdString", () => {
  it("parses every identifier type, with and without a namespace", () => {
    expect(parseNodeIdString("i=85")).toEqual({ namespace: 0, identifierType: "i", value: "85" });
    expect(parseNodeIdString("ns=2;s=Saw.Spindle Speed")).toEqual({ namespace: 2, identifierType: "s", value: "Saw.Spindle Speed" });
    expect(parseNodeIdString("nsu=http://opcfoundation.org/UA/Woodworking/;i=6001")).toEqual({
      namespace: "http://opcfoundation.org/UA/Woodworking/",
      identifierType: "i",
      value: "6001",
    });
    expect(parseNodeIdString("ns=1;g=72962B91-FA75-4AE6-8D28-B404DC7DAF63")).toEqual({ namespace: 1, identifierType: "g", value: "72962b91-fa75-4ae6-8d28-b404dc7daf63" });
    expect(parseNodeIdString("ns=65535;b=a2VyZg==")).toEqual({ namespace: 65535, identifierType: "b", value: "a2VyZg==" });
    expect(parseNodeIdString("i=4294967295").value).toBe("4294967295");
  });

  it("keeps ';' and '=' inside string identifiers and namespace URIs", () => {
    expect(parseNodeIdString("ns=3;s=a;b=c")).toEqual({ namespace: 3, identifierType: "s", value: "a;b=c" });
    expect(parseNodeIdString("nsu=urn:x;y;s=name")).toEqual({ namespace: "urn:x;y", identifierType: "s", value: "name" });
  });

  it("refuses bad ids with a precise message", () => {
    expect(message("i=abc")).toBe("i= needs an integer 0..4294967295, found 'abc'");
    expect(message("i=4294967296")).toBe("i= needs an integer 0..4294967295, found '4294967296'");
    expect(message("i=-1")).toBe("i= needs an integer 0..4294967295, found '-1'");
    expect(message("ns=65536;i=1")).toBe("ns= needs a namespace index 0..65535, found '65536'");
    expect(message("ns=x;i=1")).toBe("ns= needs a namespace index 0..65535, found 'x'");
    expect(message("ns=2")).toBe("ns= must be followed by ';' and an identifier, as in 'ns=2;s=Name', found 'ns=2'");
    expect(message("nsu=;i=1")).toBe("nsu= needs a namespace URI, found an empty one in 'nsu=;i=1'");
    expect(message("nsu=http://x/")).toMatch(/^nsu= must be followed by ';' and an identifier/);
    expect(message("g=1234")).toBe("g= needs a GUID like 72962b91-fa75-4ae6-8d28-b404dc7daf63, found '1234'");
    expect(message("b=not base64!")).toBe("b= needs non-empty base64 (A-Z a-z 0-9 + /, padded with =), found 'not base64!'");
    expect(message("b=")).toMatch(/^b= needs non-empty base64/);
    expect(message("s=")).toBe("s= needs a non-empty string, found nothing after 's=' in 's='");
    expect(message("s=" + "x".repeat(4097))).toBe("s= identifiers are limited to 4096 bytes, found 4097");
    expect(message("Spindle")).toBe("not a node id: expected i=<integer>, s=<string>, g=<GUID> or b=<base64>, optionally after ns=<index>; or nsu=<uri>; found 'Spindle'");
    expect(message(" i=1")).toMatch(/^not a node id/);
    expect(message("ns=2;x=1")).toMatch(/^not a node id: .* found 'ns=2;x=1'$/);
    expect(message("")).toMatch(/^not a node id/);
  });

  it("escapes control characters in what it echoes", () => {
    expect(message("\u001b[31mred")).toContain("\\u001b[31mred");
  });

  it("round-trips generated ids and never throws anything but KerfError", () => {
    const id = fc.oneof(
      fc.nat({ max: 4294967295 }).map((n) => ({ text: `i=${n}`, type: "i", value: String(n) })),
      fc.string({ minLength: 1, maxLength: 50 }).map((s) => ({ text: `s=${s}`, type: "s", value: s })),
      fc.uuid().map((u) => ({ text: `g=${u}`, type: "g", value: u.toLowerCase() })),
      fc.uint8Array({ minLength: 1, maxLength: 40 }).map((b) => ({ text: `b=${Buffer.from(b).toString("base64")}`, type: "b", value: Buffer.from(b).toString("base64") })),
    );
    fc.assert(
      fc.property(fc.nat({ max: 65535 }), id, (ns, { text, type, value }) => {
        expect(parseNodeIdString(`ns=${ns};${text}`)).toEqual({ namespace: ns, identifierType: type, value });
      }),
      { numRuns: 200 },
    );
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (s) => {
        try {
          parseNodeIdString(s);
        } catch (err) {
          expect(isKerfError(err, "MAPPING_INVALID")).toBe(true);
        }
      }),
      { numRuns: 300 },
    );
  });
});
