import { expect, it } from "vitest";
import { isKerfError } from "../src/errors.ts";
import { withTimeout } from "../src/timeout.ts";
import { toUplinkError } from "../src/uplink/errors.ts";

it("a timeout is a TIMEOUT KerfError that says what timed out and carries the context it was given", async () => {
  const err = await withTimeout(new Promise(() => undefined), 1, "connect", { machine: "m1", endpoint: "opc.tcp://h:4840" }).catch((e: unknown) => e);
  expect(isKerfError(err, "TIMEOUT"), String(err)).toBe(true);
  expect((err as Error).message).toBe("connect timed out after 1 ms");
  expect(isKerfError(err) && err.context).toEqual({ machine: "m1", endpoint: "opc.tcp://h:4840" });
  expect(await withTimeout(Promise.resolve(7), 60_000, "read")).toBe(7);
});

it("an uplink error names its host as context, not only in its text", () => {
  const err = toUplinkError(Object.assign(new Error("connect ECONNREFUSED 10.0.0.1:443"), { code: "ECONNREFUSED" }), "cloud.example");
  expect(err.code).toBe("UPLINK_NETWORK");
  expect(err.context).toEqual({ host: "cloud.example" });
});
