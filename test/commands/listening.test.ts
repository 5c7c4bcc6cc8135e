import { spawn } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:net";
import { expect, it } from "vitest";
import { listeningSockets } from "../helpers/listening.ts";

// The helper for issue 16's "no inbound port" test (a running connector listens on nothing):
// shown here to see a listener of this process, on IPv4 and IPv6, and to see it go.
it("finds the TCP sockets this process listens on, and none once they are closed", async () => {
  const before = listeningSockets(process.pid);
  const v4 = createServer();
  const v6 = createServer();
  await new Promise<void>((r) => v4.listen(0, "127.0.0.1", r));
  await new Promise<void>((r) => v6.listen(0, "::1", r));
  const hex = (port: number) => port.toString(16).toUpperCase().padStart(4, "0");
  const port4 = (v4.address() as { port: number }).port;
  const port6 = (v6.address() as { port: number }).port;
  const open = listeningSockets(process.pid);
  expect(open).toContain(`tcp 0100007F:${hex(port4)}`);
  expect(open.some((s) => s.startsWith("tcp6 ") && s.endsWith(`:${hex(port6)}`))).toBe(true);
  await new Promise((r) => v4.close(r));
  await new Promise((r) => v6.close(r));
  expect(listeningSockets(process.pid)).toEqual(before);
});

it("counts only this process's sockets, not those of another process in the same network namespace", async () => {
  const child = spawn(process.execPath, ["-e", "require('net').createServer().listen(0, '127.0.0.1', function () { console.log(this.address().port) })"], { stdio: ["ignore", "pipe", "inherit"] });
  try {
    const [line] = (await once(child.stdout, "data")) as [Buffer];
    const port = Number(line.toString().trim()).toString(16).toUpperCase().padStart(4, "0");
    expect(listeningSockets(child.pid!)).toEqual([`tcp 0100007F:${port}`]);
    expect(listeningSockets(process.pid).some((s) => s.endsWith(`:${port}`))).toBe(false);
  } finally {
    child.kill("SIGKILL");
    await once(child, "close");
  }
});
