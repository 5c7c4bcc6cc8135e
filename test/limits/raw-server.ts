import { spawn } from "node:child_process";
import net from "node:net";

/**
 * A rogue OPC UA server on a raw TCP socket: it speaks just enough of the binary protocol
 * (Hello → Acknowledge) to get a client to open a secure channel, then answers the
 * OpenSecureChannel request with something no client should buffer.
 *
 * It runs in a child process, so that the memory a test measures is the client's alone.
 */
export type RogueAttack =
  /** An Acknowledge whose header claims 1 GB, then bytes for ever. */
  | "huge-ack"
  /** A normal Acknowledge, then one chunk whose header claims ~2 GB, then bytes for ever. */
  | "huge-chunk"
  /** A normal Acknowledge, then well-formed intermediate chunks for ever (the final one never comes). */
  | "endless-chunks";

export interface RogueServer {
  url: string;
  /** Bytes of the attack written so far. */
  readonly sent: number;
  /** Resolves when the client has closed the connection (or the cap was reached). */
  readonly done: Promise<void>;
  close(): Promise<void>;
}

/** The Acknowledge a rogue server sends: it claims to accept anything, of any size. */
const LAVISH_ACK = { receiveBufferSize: 0x7fff_ffff, sendBufferSize: 0x7fff_ffff, maxMessageSize: 0, maxChunkCount: 0 };
const PIECE = 64 * 1024;

export async function startRogueServer(attack: RogueAttack, options: { capBytes: number }): Promise<RogueServer> {
  const child = spawn(process.execPath, [import.meta.filename, attack, String(options.capBytes)], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  let sent = 0;
  let finish!: () => void;
  const done = new Promise<void>((resolve) => (finish = resolve));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    child.on("message", (m: { url?: string; sent?: number; done?: boolean }) => {
      if (m.url) resolve(m.url);
      if (m.sent !== undefined) sent = m.sent;
      if (m.done) finish();
    });
    child.once("exit", (code) => reject(new Error(`rogue server exited with ${code} before listening`)));
  });
  void exited.then(finish);
  return {
    url,
    get sent() {
      return sent;
    },
    done,
    close: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
}

if (process.argv[1] === import.meta.filename && process.send) {
  const server = await serve(process.argv[2] as RogueAttack, { capBytes: Number(process.argv[3]) });
  const report = () => process.send!({ sent: server.sent });
  setInterval(report, 20).unref();
  void server.done.then(() => {
    report();
    process.send!({ done: true });
  });
  process.send({ url: server.url });
}

/** The server itself, in this process. */
async function serve(attack: RogueAttack, options: { capBytes: number }): Promise<RogueServer> {
  let sent = 0;
  let finish!: () => void;
  const done = new Promise<void>((resolve) => (finish = resolve));
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => undefined);
    socket.on("close", () => {
      sockets.delete(socket);
      finish();
    });
    let received = Buffer.alloc(0);
    let stage: "hello" | "open" | "attacking" = "hello";
    socket.on("data", (data) => {
      if (stage === "attacking") return;
      received = Buffer.concat([received, data]);
      const message = takeMessage(received);
      if (!message) return;
      received = received.subarray(message.length);
      if (stage === "hello") {
        if (attack === "huge-ack") {
          stage = "attacking";
          void flood(socket, header("ACK", "F", 1 << 30));
          return;
        }
        socket.write(ack(LAVISH_ACK));
        stage = "open";
      } else {
        stage = "attacking";
        void flood(socket, attack === "huge-chunk" ? header("OPN", "F", 0x7fff_fff0) : Buffer.alloc(0));
      }
    });
  });

  /** Writes the attack with backpressure, so the bytes sent are the bytes the client took in. */
  async function flood(socket: net.Socket, first: Buffer): Promise<void> {
    let sequence = 1;
    const next = (): Buffer => (attack === "endless-chunks" ? openChunk("C", sequence++, PIECE) : Buffer.alloc(PIECE));
    let piece = first.length > 0 ? first : next();
    while (!socket.destroyed && sent < options.capBytes) {
      sent += piece.length;
      if (!socket.write(piece)) {
        const ok = await new Promise<boolean>((resolve) => {
          socket.once("drain", () => resolve(true));
          socket.once("close", () => resolve(false));
        });
        if (!ok) break;
      }
      piece = next();
    }
    socket.end();
    finish();
  }

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `opc.tcp://127.0.0.1:${port}`,
    get sent() {
      return sent;
    },
    done,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** The first complete message in `buf` (type, final flag, UInt32 length including the header). */
function takeMessage(buf: Buffer): Buffer | null {
  if (buf.length < 8) return null;
  const length = buf.readUInt32LE(4);
  return buf.length >= length ? buf.subarray(0, length) : null;
}

function header(type: string, final: "F" | "C", length: number): Buffer {
  const h = Buffer.alloc(8);
  h.write(type + final, 0, "ascii");
  h.writeUInt32LE(length, 4);
  return h;
}

function ack(limits: typeof LAVISH_ACK): Buffer {
  const body = Buffer.alloc(20);
  body.writeUInt32LE(0, 0); // protocol version
  body.writeUInt32LE(limits.receiveBufferSize, 4);
  body.writeUInt32LE(limits.sendBufferSize, 8);
  body.writeUInt32LE(limits.maxMessageSize, 12);
  body.writeUInt32LE(limits.maxChunkCount, 16);
  return Buffer.concat([header("ACK", "F", 8 + body.length), body]);
}

/** One OpenSecureChannel chunk with a valid asymmetric header (policy None), padded to `size`. */
function openChunk(final: "F" | "C", sequence: number, size: number): Buffer {
  const policy = Buffer.from("http://opcfoundation.org/UA/SecurityPolicy#None", "ascii");
  const fixed = Buffer.alloc(4 + 4 + policy.length + 4 + 4 + 4 + 4);
  let o = 0;
  o = fixed.writeUInt32LE(0, o); // secure channel id
  o = fixed.writeInt32LE(policy.length, o);
  o += policy.copy(fixed, o);
  o = fixed.writeInt32LE(-1, o); // sender certificate: null
  o = fixed.writeInt32LE(-1, o); // receiver thumbprint: null
  o = fixed.writeUInt32LE(sequence, o); // sequence number
  fixed.writeUInt32LE(1, o); // request id
  const body = Buffer.alloc(Math.max(0, size - 8 - fixed.length));
  return Buffer.concat([header("OPN", final, 8 + fixed.length + body.length), fixed, body]);
}
