import { chmodSync, lstatSync, unlinkSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { ListenAddress } from "../config/listen.ts";
import { KerfError } from "../errors.ts";

export interface EndpointHandlers {
  metrics(): Promise<{ contentType: string; body: string }>;
  /** The same summary as `kerf status --json`. */
  status(): unknown;
}

/**
 * The optional local endpoint (status.listen): GET /metrics and GET /status on a loopback port
 * or a Unix socket, nothing else. The config refuses any other address; this serves what it is given.
 */
export async function listenEndpoint(address: ListenAddress, handlers: EndpointHandlers): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    const send = (status: number, contentType: string, body: string) => {
      res.writeHead(status, { "content-type": contentType, "cache-control": "no-store" });
      res.end(body);
    };
    if (req.method !== "GET" && req.method !== "HEAD") return send(405, "text/plain", "only GET\n");
    const route = (req.url ?? "").split("?")[0];
    if (route === "/metrics") {
      handlers.metrics().then(
        (m) => send(200, m.contentType, m.body),
        (err: unknown) => send(500, "text/plain", `${(err as Error).message}\n`),
      );
      return;
    }
    if (route === "/status") return send(200, "application/json", `${JSON.stringify(handlers.status())}\n`);
    send(404, "text/plain", "GET /metrics or /status\n");
  });
  if (address.kind === "unix") removeStaleSocket(address.path);
  await new Promise<void>((resolve, reject) => {
    const failed = (err: NodeJS.ErrnoException) =>
      reject(new KerfError("CONFIG_INVALID", `cannot listen on ${describe(address)} (status.listen): ${err.code ?? err.message}`, { details: ["choose another port or socket path in status.listen, or leave it out"] }));
    server.once("error", failed);
    const ready = () => {
      server.off("error", failed);
      resolve();
    };
    if (address.kind === "unix") server.listen(address.path, ready);
    else server.listen(address.port, address.host, ready);
  });
  // what the endpoint tells is for this host's operator, not for other users on it
  if (address.kind === "unix") chmodSync(address.path, 0o600);
  return { url: urlOf(server, address), close: () => close(server) };
}

function describe(a: ListenAddress): string {
  return a.kind === "unix" ? `unix:${a.path}` : `${a.host.includes(":") ? `[${a.host}]` : a.host}:${a.port}`;
}

function urlOf(server: Server, a: ListenAddress): string {
  if (a.kind === "unix") return `unix:${a.path}`;
  const { port } = server.address() as AddressInfo;
  return `http://${a.host.includes(":") ? `[${a.host}]` : a.host}:${port}`;
}

/** A socket left by a process that was killed; anything else at that path is not ours to delete. */
function removeStaleSocket(file: string): void {
  try {
    if (lstatSync(file).isSocket()) unlinkSync(file);
  } catch {
    // nothing there
  }
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
