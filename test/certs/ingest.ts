/** One ingest POST (docs/protocol.md) through a dispatcher: the status the cloud answered. */
import { gzipSync } from "node:zlib";
import { request, type Dispatcher } from "undici";

export async function postOnce(dispatcher: Dispatcher, baseUrl: string, instance: string, batch: number, epoch = String(Date.now())): Promise<number> {
  const envelope = { connector: instance, batch, messages: [{ kind: "data", machine: "m", items: [{ key: "k", v: batch, q: 0, t: new Date().toISOString() }] }] };
  const res = await request(`${baseUrl}/v1/ingest`, {
    dispatcher,
    method: "POST",
    headers: { "content-type": "application/json", "content-encoding": "gzip", "idempotency-key": `${instance}:${epoch}:${batch}` },
    body: gzipSync(JSON.stringify(envelope)),
  });
  await res.body.text();
  return res.statusCode;
}
