/**
 * The stable codes of log events (the `event` field of a JSON log line), declared once: an
 * operator's alert or a log query matches on them, never on the message text, which may change.
 * Errors carry the KerfError `code` (src/errors.ts) beside. A new event gets its code here; a code
 * is never reused for another meaning (test/log-events.test.ts checks the source against this list).
 */
export const LOG_EVENTS = {
  started: "kerf run started: config loaded, parts started",
  stopping: "kerf run was asked to stop (signal, launcher gone, closed stdout)",
  log_level: "the log level changed at runtime (SIGHUP re-read log.level)",
  log_level_unchanged: "SIGHUP: the config did not load; the log level stays",
  unhandled_rejection: "a promise rejection nothing handled: a bug, the process went on",

  opcua_connected: "a machine's session is connected and subscribed (security mode, policy, items)",
  opcua_connect_failed: "a connection attempt to a machine failed (code: the reason)",
  opcua_reconnecting: "a machine's session waits out its backoff before the next attempt",
  opcua_connection_lost: "a machine's connection broke; node-opcua repairs the channel",
  opcua_channel_repaired: "a machine's channel is repaired; session and subscriptions kept",

  buffer_encryption: "at start: whether the buffer is encrypted, and with which key file",
  buffer_encrypted: "encryption was turned on: the batches the buffer held were sealed in place",
  buffer_full: "the buffer reached buffer.maxBytes: the oldest batches were dropped and counted",
  buffer_drop: "a batch was dropped with a counted reason",
  buffer_tampered: "a stored batch failed its authentication: dropped and counted as tampered",
  buffer_unreadable: "a stored batch (dropped) or the snapshot of delivered values could not be read back",
  buffer_snapshot: "writing the snapshot of delivered values failed; retried later",
  buffer_maintenance: "compaction of the buffer file failed",

  uplink_retry: "a batch was not delivered and is retried after backoff while others go on",
  uplink_down: "the cloud looks down: one request at a time after backoff",
  uplink_dead_letter: "the cloud refused a batch for good: dropped and counted (rejected, too large)",
  uplink_repinned: "the uplink took a new signed pin set without a restart",

  token_failed: "an access token could not be fetched (code AUTH_TOKEN)",
  cert_renewed: "the instance certificate was renewed over EST",
  cert_renewal_failed: "a renewal of the instance certificate failed; the current one stays",
  cert_expired: "the instance certificate expired and could not be renewed: enrol again",

  update_held: "a downloaded update is held back (window, lock, manual apply, no launcher, rolled back before)",
  update_requested: "the agent asked the launcher to install an update",
  update_outcome_reported: "the launcher's last update outcome went upstream",

  progress: "a long operation (subscribing, draining a backlog, downloading an update): percent and time left, then its end",

  status_endpoint: "the local status and metrics endpoint listens (status.listen)",
  metrics_write_failed: "<state>/metrics.prom could not be written",
} as const;

export type LogEvent = keyof typeof LOG_EVENTS;
