import { describe, expect, it } from "vitest";
import { isKerfError } from "../../src/errors.ts";
import { namespaceIndex, parseBrowsePath, parseSelectPath } from "../../src/config/browse-path.ts";

function refusal(text: string): string {
  try {
    parseBrowsePath(text);
  } catch (err) {
    expect(isKerfError(err, "MAPPING_INVALID")).toBe(true);
    return (err as Error).message;
  }
  throw new Error(`expected ${text} to be refused`);
}

describe("browse paths", () => {
  it("reads index prefixes, nsu prefixes, both delimiters and escapes", () => {
    expect(parseBrowsePath("/2:Machine.<nsu=urn:kerf:simulator>Speed/Name")).toEqual([
      { reference: "hierarchical", namespace: 2, name: "Machine" },
      { reference: "aggregates", namespace: "urn:kerf:simulator", name: "Speed" },
      { reference: "hierarchical", namespace: 0, name: "Name" },
    ]);
    // a URI with '/', '.' and ':' inside <nsu=…>; an escaped '/' and '.' inside a name
    expect(parseBrowsePath("/<nsu=http://opcfoundation.org/UA/Machinery/>Machines/3:Line&/1&.b")).toEqual([
      { reference: "hierarchical", namespace: "http://opcfoundation.org/UA/Machinery/", name: "Machines" },
      { reference: "hierarchical", namespace: 3, name: "Line/1.b" },
    ]);
    // only a leading run of digits is an index; other ':' belong to the name
    expect(parseBrowsePath("/Foo:Bar")).toEqual([{ reference: "hierarchical", namespace: 0, name: "Foo:Bar" }]);
  });

  it("refuses what it cannot read, saying what it found and what it expects", () => {
    expect(refusal("Machine")).toMatch(/found "M" at position 1 \(expected '\/' or '\.'/);
    expect(refusal("/2:Machine//State")).toMatch(/element 2 has no name/);
    expect(refusal("/<HasComponent>Speed")).toMatch(/reference types are not supported/);
    expect(refusal("/<nsu=urn:x")).toMatch(/expected <nsu=<namespace uri>>/);
    expect(refusal("/<nsu=>Name")).toMatch(/empty namespace URI/);
    expect(refusal("/70000:Name")).toMatch(/out of range/);
    expect(refusal("/Name&")).toMatch(/ends with '&'/);
    expect(refusal("")).toMatch(/empty/);
    expect(refusal("/a>b")).toMatch(/escape it as &>/);
  });

  it("select paths take the leading '/' as optional", () => {
    expect(parseSelectPath("ActiveState/Id")).toEqual(parseBrowsePath("/ActiveState/Id"));
    expect(parseSelectPath("ActiveState.Id").map((e) => e.name)).toEqual(["ActiveState", "Id"]);
  });

  it("maps a namespace URI to the server's index, and says so when the server lacks it", () => {
    const [e] = parseBrowsePath("/<nsu=urn:b>X");
    expect(namespaceIndex(e!, ["http://opcfoundation.org/UA/", "urn:a", "urn:b"])).toBe(2);
    expect(() => namespaceIndex(e!, ["http://opcfoundation.org/UA/"])).toThrow(/the server has no namespace 'urn:b'/);
  });
});
