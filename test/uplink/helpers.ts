/** Shared test fixtures for the uplink tests: temp dirs, client identities and a tiny TLS server. */
import { generateKeyPairSync } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import tls from "node:tls";
import { DurableBuffer } from "../../src/buffer/buffer.ts";
import type { CertAuthority } from "../../src/certs/devca.ts";
import type { BatchRecord } from "../../src/devcloud/store.ts";
import { silentLogger } from "../../src/log.ts";
import type { Message } from "../../src/message.ts";
import { Sender, type SenderOptions } from "../../src/uplink/sender.ts";
import { Transport } from "../../src/uplink/transport.ts";

export async function tempDir(prefix: string): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** A client key made here and a certificate for it from `ca`. */
export async function clientIdentity(ca: CertAuthority, instance: string, validity: { notBefore?: Date; notAfter?: Date } = {}) {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const keyPem = privateKey.export({ type: "pkcs8", format: "pem" }) as string;
  const publicKeyPem = publicKey.export({ type: "spki", format: "pem" }) as string;
  const certPem = await ca.issueClientCert({ instance, publicKeyPem, ...validity });
  return { certPem, keyPem };
}

/** What a test started; `runCleanups` ends it newest first. */
export type Cleanups = (() => Promise<unknown> | void)[];

export async function runCleanups(cleanups: Cleanups): Promise<void> {
  while (cleanups.length) await Promise.resolve(cleanups.pop()!()).catch(() => undefined);
}

/** The sender's durable buffer, `buffer.db` in `dir`. */
export function openBuffer(dir: string, maxBytes: number, cleanups: Cleanups): DurableBuffer {
  const buffer = DurableBuffer.open({ path: path.join(dir, "buffer.db"), maxBytes, logger: silentLogger() });
  cleanups.push(() => buffer.close());
  return buffer;
}

/** A new client identity of instance line-1 from `ca`, and a Transport that presents it, trusts `ca` and pins `pins`. */
export async function clientTransport(ca: CertAuthority, pins: string[], cleanups: Cleanups, options: { connections?: number } = {}) {
  const identity = await clientIdentity(ca, "line-1");
  const transport = new Transport({ ...identity, caPem: ca.certPem, pins, logger: silentLogger(), ...options });
  cleanups.push(() => transport.close());
  return { identity, transport };
}

/** A Sender of instance line-1; each test gives its own store, transport, cloud and timing. */
export function newSender(options: Omit<SenderOptions, "instance" | "logger">, cleanups: Cleanups): Sender {
  const sender = new Sender({ instance: "line-1", logger: silentLogger(), ...options });
  cleanups.push(() => sender.stop());
  return sender;
}

export interface TestTlsServer {
  port: number;
  /** TCP connections accepted. */
  connections: number;
  /** TLS handshakes the server completed, and how many of them resumed a session. */
  handshakes: number;
  resumed: number;
  /** Application bytes (decrypted) received over all connections: request bytes. */
  appBytes: number;
  requests: number;
  setCert(chainPem: string, keyPem: string): void;
  /** Answers the requests for /hold that are being held open. */
  releaseHeld(): void;
  /** Destroys open connections so the next request needs a new one. */
  dropConnections(): void;
  /** Destroys the connections that have no held request. */
  dropIdleConnections(): void;
  close(): Promise<void>;
}

/**
 * A raw TLS server that answers each HTTP request with 200 "ok". Being raw lets it count the
 * decrypted bytes each connection receives, which an https server hides from us.
 */
export async function startTlsServer(options: tls.TlsOptions & { chainPem: string; keyPem: string; holdAll?: boolean }): Promise<TestTlsServer> {
  const { chainPem, keyPem, holdAll, ...rest } = options;
  const sockets = new Set<tls.TLSSocket>();
  const held: tls.TLSSocket[] = [];
  const ok = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok";
  const state = { connections: 0, handshakes: 0, resumed: 0, appBytes: 0, requests: 0 };
  const server = tls.createServer({ ...rest, cert: chainPem, key: keyPem }, (socket) => {
    state.handshakes++;
    if (socket.isSessionReused()) state.resumed++;
    sockets.add(socket);
    let pending = "";
    socket.on("data", (chunk: Buffer) => {
      state.appBytes += chunk.length;
      pending += chunk.toString("latin1");
      // Requests in these tests have no body; each header block ends with an empty line.
      let end: number;
      while ((end = pending.indexOf("\r\n\r\n")) >= 0) {
        const head = pending.slice(0, end);
        pending = pending.slice(end + 4);
        state.requests++;
        // A request for /hold (any request, with holdAll) keeps its connection busy until releaseHeld().
        if (holdAll || head.startsWith("GET /hold ")) held.push(socket);
        else socket.write(ok);
      }
    });
    socket.on("error", () => undefined);
    socket.on("close", () => sockets.delete(socket));
  });
  server.on("connection", () => state.connections++);
  server.on("tlsClientError", () => undefined);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    get connections() {
      return state.connections;
    },
    get handshakes() {
      return state.handshakes;
    },
    get resumed() {
      return state.resumed;
    },
    get appBytes() {
      return state.appBytes;
    },
    get requests() {
      return state.requests;
    },
    setCert(newChain: string, newKey: string) {
      // Keep the ticket keys, so sessions issued before the swap can still be resumed:
      // that is what lets a resumed session skip the new certificate entirely.
      const ticketKeys = server.getTicketKeys();
      server.setSecureContext({ ...rest, cert: newChain, key: newKey });
      server.setTicketKeys(ticketKeys);
    },
    releaseHeld() {
      for (const s of held.splice(0)) s.write(ok);
    },
    dropConnections() {
      for (const s of sockets) s.destroy();
    },
    dropIdleConnections() {
      for (const s of sockets) if (!held.includes(s)) s.destroy();
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Items numbered 1, 2, 3, … across calls (`v` is the number), so the cloud can count each one. */
export function numberedItems(machine = "m1") {
  let seq = 0;
  const t0 = Date.UTC(2026, 0, 1);
  return {
    get last() {
      return seq;
    },
    /** One stored batch of `n` items, shaped like the agent's: one data message. */
    batch(n: number): Message[] {
      const items = Array.from({ length: n }, () => {
        seq++;
        return { key: `k${seq % 50}`, v: seq, q: 0, t: new Date(t0 + seq).toISOString() };
      });
      return [{ kind: "data", machine, items }];
    },
  };
}

/** How often the cloud stored each numbered item (first deliveries only; a duplicate batch stores nothing). */
export function countStored(store: { onBatch(listener: (b: BatchRecord) => void): () => void }): Map<number, number> {
  const seen = new Map<number, number>();
  store.onBatch((b) => {
    if (b.duplicate) return;
    for (const m of b.messages) if (m.kind === "data") for (const item of m.items) seen.set(item.v as number, (seen.get(item.v as number) ?? 0) + 1);
  });
  return seen;
}

/** The numbers in 1..last that were not stored exactly once. */
export function notExactlyOnce(seen: Map<number, number>, last: number): number[] {
  const wrong: number[] = [];
  for (let v = 1; v <= last; v++) if (seen.get(v) !== 1) wrong.push(v);
  return wrong;
}
