import { expect, it } from "vitest";
import { isKerfError } from "../src/errors.ts";
import { withTimeout } from "../src/timeout.ts";

it("a timeout is a TIMEOUT KerfError that says what timed out and carries the context it was given", async () => {
  const err = await withTimeout(new Promise(() => undefined), 1, "connect", { machine: "m1", endpoint: "opc.tcp://h:4840" }).catch((e: unknown) => e);
  expect(isKerfError(err, "TIMEOUT"), String(err)).toBe(true);
  expect((err as Error).message).toBe("connect timed out after 1 ms");
  expect(isKerfError(err) && err.context).toEqual({ machine: "m1", endpoint: "opc.tcp://h:4840" });
  expect(await withTimeout(Promise.resolve(7), 60_000, "read")).toBe(7);
});
