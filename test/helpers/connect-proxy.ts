import http from "node:http";
import net from "node:net";

export interface ConnectRequest {
  /** The CONNECT target, host:port. */
  target: string;
  /** The Proxy-Authorization header as received, if any. */
  authorization: string | undefined;
  /** The answer the proxy gave. */
  status: number;
}

export interface ConnectProxy {
  url: string;
  port: number;
  /** Every CONNECT received, in order. */
  readonly connects: ConnectRequest[];
  /** Bytes the proxy forwarded from client to target, over all tunnels. */
  readonly bytesUp: number;
  /** Answer the next CONNECTs with this status instead of opening the tunnel (undefined: tunnel). */
  refuseWith: number | undefined;
  /** Closes every open tunnel, as a proxy that cuts idle connections does; new CONNECTs still work. */
  cut(): void;
  close(): Promise<void>;
}

/**
 * A real HTTP CONNECT proxy (RFC 9110 §9.3.6) on loopback, as a customer's forward proxy works:
 * it checks Basic credentials when given some, then relays bytes blindly in both directions.
 */
export async function startConnectProxy(options: { username?: string; password?: string } = {}): Promise<ConnectProxy> {
  const expected = options.username === undefined ? undefined : `Basic ${Buffer.from(`${options.username}:${options.password ?? ""}`).toString("base64")}`;
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => undefined);
  };
  const state = { bytesUp: 0 };
  const connects: ConnectRequest[] = [];
  const proxy: ConnectProxy = {
    url: "",
    port: 0,
    connects,
    get bytesUp() {
      return state.bytesUp;
    },
    refuseWith: undefined,
    cut: () => {
      for (const s of sockets) s.destroy();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  const answer = (socket: net.Socket, status: number, reason: string, headers = "") => {
    socket.end(`HTTP/1.1 ${status} ${reason}\r\n${headers}content-length: 0\r\nconnection: close\r\n\r\n`);
  };
  const server = http.createServer((_req, res) => {
    // Only tunnels: a plain request to the proxy is a mistake of the client.
    res.writeHead(405, { allow: "CONNECT" }).end();
  });
  server.on("connect", (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    track(client);
    const target = req.url ?? "";
    const authorization = req.headers["proxy-authorization"];
    const record = (status: number) => connects.push({ target, authorization, status });
    if (expected !== undefined && authorization !== expected) {
      record(407);
      return answer(client, 407, "Proxy Authentication Required", 'proxy-authenticate: Basic realm="kerf-test"\r\n');
    }
    if (proxy.refuseWith !== undefined) {
      record(proxy.refuseWith);
      return answer(client, proxy.refuseWith, "Refused");
    }
    const [host, port] = [target.slice(0, target.lastIndexOf(":")), Number(target.slice(target.lastIndexOf(":") + 1))];
    const upstream = net.connect(port, host.replace(/^\[|\]$/g, ""));
    track(upstream);
    upstream.on("error", () => {
      if (!client.destroyed && client.bytesWritten === 0) answer(client, 502, "Bad Gateway");
    });
    upstream.on("connect", () => {
      record(200);
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      if (head.length > 0) {
        state.bytesUp += head.length;
        upstream.write(head);
      }
      client.on("data", (chunk: Buffer) => (state.bytesUp += chunk.length));
      client.pipe(upstream).pipe(client);
    });
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  proxy.port = (server.address() as net.AddressInfo).port;
  proxy.url = `http://127.0.0.1:${proxy.port}`;
  return proxy;
}
