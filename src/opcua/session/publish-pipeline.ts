import type { ClientSession, OPCUAClient } from "node-opcua-client";

/** Publish requests in flight at most when the server has a backlog (node-opcua keeps 5 per subscription). */
export const MAX_PUBLISH_REQUESTS = 20;
const TICK_MS = 50;
const STEP = 2;

interface PublishEngineInternals {
  nbPendingPublishRequests: number;
  nbMaxPublishRequestsAcceptedByServer: number;
  send_publish_request(): void;
}

/**
 * A server can only send a notification message in answer to a publish request, and node-opcua
 * sends the next one only after it has handled a response. When the server has more queued than
 * one response carries (1,000 notifications at node-opcua's default), each round trip leaves it
 * waiting, and any pause on the client (GC, a commit, another process on the cores) lets its
 * queues overflow. A response that says `moreNotifications` fills the pipeline up to
 * MAX_PUBLISH_REQUESTS; a server that takes fewer says BadTooManyPublishRequests, and node-opcua
 * then keeps below that. Returns a function that stops watching.
 */
export function deepenPublishPipeline(client: OPCUAClient, session: ClientSession): () => void {
  let backlog = false;
  const onResponse = (response: { schema?: { name?: string }; moreNotifications?: boolean }) => {
    if (response?.moreNotifications && response.schema?.name === "PublishResponse") backlog = true;
  };
  // On a timer rather than per response: node-opcua sends a request (its own replacements too) a
  // turn of the event loop later and only then counts it, so a burst of responses would make
  // the count look low. A few requests per tick fill the pipeline within a second.
  const timer = setInterval(() => {
    if (!backlog) return;
    backlog = false;
    const engine = (session as unknown as { getPublishEngine?(): PublishEngineInternals }).getPublishEngine?.();
    if (!engine) return;
    const room = Math.min(MAX_PUBLISH_REQUESTS, engine.nbMaxPublishRequestsAcceptedByServer) - engine.nbPendingPublishRequests;
    for (let i = 0; i < Math.min(room, STEP); i++) engine.send_publish_request();
  }, TICK_MS);
  timer.unref();
  client.on("receive_response", onResponse);
  return () => {
    clearInterval(timer);
    client.off("receive_response", onResponse);
  };
}
