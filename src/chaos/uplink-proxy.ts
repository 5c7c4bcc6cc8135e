/**
 * The chaos suite's uplink: a TCP proxy on loopback between the connector and the devcloud's
 * ingest port. TLS passes through it untouched (the connector's pins still see the devcloud's
 * key), so what it does is what a bad network does: refuse, hang, throttle, or reset.
 */
import net from "node:net";

export type UplinkMode =
  /** relay both ways */
  | "forward"
  /** new connections are refused at once (a closed port, a firewall's reject) */
  | "cut"
  /** new connections are accepted and never answered (a firewall's drop, a hung peer) */
  | "black-hole";

export interface UplinkProxy {
  port: number;
  readonly mode: UplinkMode;
  /** Switches mode; every carried connection is closed, so the change takes hold at once. */
  setMode(mode: UplinkMode): void;
  /** Bytes per second each way from now on (0: unlimited). A slow link, not a broken one. */
  setRate(bytesPerSecond: number): void;
  /** Resets every carried connection (TCP RST) without changing the mode. */
  reset(): number;
  /** Connections accepted since start. */
  readonly accepted: number;
  close(): Promise<void>;
}

export async function startUplinkProxy(targetPort: number, targetHost = "127.0.0.1"): Promise<UplinkProxy> {
  const sockets = new Set<net.Socket>();
  let mode: UplinkMode = "forward";
  let rate = 0;
  let accepted = 0;
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.on("error", () => undefined);
    s.on("close", () => sockets.delete(s));
  };
  // Relays `from` to `to`; when a rate is set, pauses `from` for as long as the chunk takes at that rate.
  const relay = (from: net.Socket, to: net.Socket) => {
    from.on("data", (d: Buffer) => {
      if (!to.destroyed) to.write(d);
      if (rate <= 0) return;
      from.pause();
      setTimeout(() => from.resume(), (d.length / rate) * 1000).unref();
    });
    from.on("end", () => to.end());
  };
  const server = net.createServer((client) => {
    accepted++;
    track(client);
    if (mode === "cut") return void client.resetAndDestroy();
    if (mode === "black-hole") return;
    const upstream = net.connect(targetPort, targetHost);
    track(upstream);
    relay(client, upstream);
    relay(upstream, client);
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const resetAll = () => {
    const n = sockets.size;
    for (const s of sockets) s.resetAndDestroy();
    return n;
  };
  return {
    port: (server.address() as net.AddressInfo).port,
    get mode() {
      return mode;
    },
    setMode(m) {
      mode = m;
      resetAll();
    },
    setRate(bytesPerSecond) {
      rate = bytesPerSecond;
    },
    reset: resetAll,
    get accepted() {
      return accepted;
    },
    close: () =>
      new Promise<void>((resolve) => {
        resetAll();
        server.close(() => resolve());
      }),
  };
}
