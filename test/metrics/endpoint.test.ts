import { mkdtempSync, rmSync, statSync } from "node:fs";
import { request } from "node:http";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { listenEndpoint } from "../../src/metrics/endpoint.ts";

type Target = { url: string } | { socketPath: string };

function get(target: Target, route: string, method = "GET"): Promise<{ status: number; type: string; body: string }> {
  const where = "url" in target ? { host: new URL(target.url).hostname, port: Number(new URL(target.url).port) } : { socketPath: target.socketPath };
  return new Promise((resolve, reject) => {
    const req = request({ ...where, path: route, method }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (d: string) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, type: String(res.headers["content-type"]), body }));
    });
    req.on("error", reject).end();
  });
}

const handlers = {
  metrics: async () => ({ contentType: "text/plain; version=0.0.4; charset=utf-8", body: "kerf_buffer_items 3\n" }),
  status: () => ({ status: "healthy", buffer: { items: 3 } }),
};

describe("the local status endpoint", () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it("serves /metrics and /status on a loopback port, and nothing else", async () => {
    const e = await listenEndpoint({ kind: "tcp", host: "127.0.0.1", port: 0 }, handlers);
    cleanups.push(() => e.close());
    expect(e.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(await get(e, "/metrics")).toEqual({ status: 200, type: "text/plain; version=0.0.4; charset=utf-8", body: "kerf_buffer_items 3\n" });
    const status = await get(e, "/status");
    expect(status.status).toBe(200);
    expect(JSON.parse(status.body)).toEqual({ status: "healthy", buffer: { items: 3 } });
    expect((await get(e, "/")).status).toBe(404);
    expect((await get(e, "/metrics", "POST")).status).toBe(405);
  });

  it("serves on a Unix socket only its owner can open, replacing one a killed process left", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "kerf-endpoint-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const socketPath = path.join(dir, "status.sock");
    const first = await listenEndpoint({ kind: "unix", path: socketPath }, handlers);
    // left behind as by a SIGKILL: the file stays, nothing listens
    const stale = await listenEndpoint({ kind: "unix", path: socketPath }, handlers);
    cleanups.push(() => stale.close(), () => first.close());
    expect(statSync(socketPath).mode & 0o777).toBe(0o600);
    expect((await get({ socketPath }, "/metrics")).body).toBe("kerf_buffer_items 3\n");
  });

  it("says which address it cannot take", async () => {
    const e = await listenEndpoint({ kind: "tcp", host: "127.0.0.1", port: 0 }, handlers);
    cleanups.push(() => e.close());
    const port = Number(new URL(e.url).port);
    await expect(listenEndpoint({ kind: "tcp", host: "127.0.0.1", port }, handlers)).rejects.toThrow(`cannot listen on 127.0.0.1:${port} (status.listen): EADDRINUSE`);
  });
});
