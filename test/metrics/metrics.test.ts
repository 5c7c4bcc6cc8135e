import { register } from "prom-client";
import { describe, expect, it } from "vitest";
import { Metrics, type MetricsSnapshot } from "../../src/metrics/metrics.ts";
import { sample } from "./sample.ts";

const NOW = Date.parse("2026-12-06T12:00:00Z");

function snapshot(over: Partial<MetricsSnapshot> = {}): MetricsSnapshot {
  return {
    version: "1.2.3",
    received: 120,
    buffer: { appendedItems: 1_000, ackedItems: 900, dropped: { buffer_full: 7, rejected: 2, too_large: 0, tampered: 1 }, items: 90, bytes: 4096, oldestCreatedAt: NOW - 42_000 },
    uplink: { sentItems: 950, consecutiveFailures: 3, lastAckAt: NOW - 1_000 },
    machines: [
      { machine: "saw-1", state: "connected", connects: 4 },
      { machine: "edge-1", state: "reconnecting", connects: 1 },
    ],
    certificateNotAfter: NOW + 10.5 * 86_400_000,
    tokenRenewals: 6,
    update: { state: "held", consecutiveFailures: 0 },
    commands: { accepted: 4, refused: 2, consecutiveFailures: 1 },
    problems: 1,
    ...over,
  };
}

describe("Prometheus metrics", () => {
  it("shows each source's value under its name", async () => {
    const text = await new Metrics().text(snapshot(), NOW);
    expect(sample(text, 'kerf_info{version="1.2.3"}')).toBe(1);
    expect(sample(text, "kerf_values_received_total")).toBe(120);
    expect(sample(text, "kerf_values_buffered_total")).toBe(1_000);
    expect(sample(text, "kerf_values_sent_total")).toBe(950);
    expect(sample(text, "kerf_values_acknowledged_total")).toBe(900);
    expect(sample(text, 'kerf_values_dropped_total{reason="buffer_full"}')).toBe(7);
    expect(sample(text, 'kerf_values_dropped_total{reason="rejected"}')).toBe(2);
    expect(sample(text, 'kerf_values_dropped_total{reason="tampered"}')).toBe(1);
    expect(sample(text, "kerf_buffer_items")).toBe(90);
    expect(sample(text, "kerf_buffer_bytes")).toBe(4096);
    expect(sample(text, "kerf_buffer_oldest_age_seconds")).toBe(42);
    expect(sample(text, "kerf_uplink_consecutive_failures")).toBe(3);
    expect(sample(text, "kerf_uplink_last_ack_timestamp_seconds")).toBe((NOW - 1_000) / 1000);
    expect(sample(text, 'kerf_machine_connected{machine="saw-1"}')).toBe(1);
    expect(sample(text, 'kerf_machine_connected{machine="edge-1"}')).toBe(0);
    expect(sample(text, 'kerf_machine_reconnects_total{machine="saw-1"}')).toBe(3);
    expect(sample(text, 'kerf_machine_reconnects_total{machine="edge-1"}')).toBe(0);
    expect(sample(text, "kerf_certificate_expiry_days")).toBe(10.5);
    expect(sample(text, "kerf_token_renewals_total")).toBe(6);
    expect(sample(text, 'kerf_update_state{state="held"}')).toBe(1);
    expect(sample(text, 'kerf_update_state{state="idle"}')).toBe(0);
    expect(sample(text, "kerf_health_problems")).toBe(1);
    expect(sample(text, 'kerf_commands_total{outcome="accepted"}')).toBe(4);
    expect(sample(text, 'kerf_commands_total{outcome="refused"}')).toBe(2);
    expect(sample(text, "kerf_command_poll_failures")).toBe(1);
  });

  it("follows the sources from one refresh to the next, also when a counter starts over", async () => {
    const m = new Metrics();
    await m.text(snapshot(), NOW);
    const text = await m.text(snapshot({ received: 5, machines: [{ machine: "saw-1", state: "connected", connects: 1 }], update: null, commands: null, certificateNotAfter: null, tokenRenewals: null, buffer: { ...snapshot().buffer, oldestCreatedAt: null } }), NOW);
    expect(sample(text, "kerf_values_received_total")).toBe(5);
    expect(sample(text, 'kerf_machine_reconnects_total{machine="saw-1"}')).toBe(0);
    // a machine removed from the config is no longer exported; neither is an update loop that is off
    expect(text).not.toContain('machine="edge-1"');
    expect(text).not.toMatch(/^kerf_update_state\{/m);
    expect(text).not.toMatch(/^kerf_certificate_expiry_days /m);
    expect(text).not.toMatch(/^kerf_token_renewals_total /m);
    expect(text).not.toMatch(/^kerf_command/m);
    expect(sample(text, "kerf_buffer_oldest_age_seconds")).toBe(0);
  });

  it("puts uplink answers into a latency histogram by outcome", async () => {
    const m = new Metrics();
    m.observeUplinkRequest(30, "success");
    m.observeUplinkRequest(700, "success");
    m.observeUplinkRequest(12_000, "retry");
    const text = await m.text(snapshot(), NOW);
    expect(sample(text, 'kerf_uplink_request_duration_seconds_count{outcome="success"}')).toBe(2);
    expect(sample(text, 'kerf_uplink_request_duration_seconds_bucket{le="0.05",outcome="success"}')).toBe(1);
    expect(sample(text, 'kerf_uplink_request_duration_seconds_bucket{le="1",outcome="success"}')).toBe(2);
    expect(sample(text, 'kerf_uplink_request_duration_seconds_bucket{le="10",outcome="retry"}')).toBe(0);
    expect(sample(text, 'kerf_uplink_request_duration_seconds_sum{outcome="retry"}')).toBe(12);
  });

  it("labels every series with the connector's instance, so that connectors can share a textfile directory", async () => {
    const m = new Metrics("kerf-line1-saw");
    m.observeUplinkRequest(30, "success");
    const text = await m.text(snapshot(), NOW);
    const series = text.split("\n").filter((l) => l !== "" && !l.startsWith("#"));
    expect(series.length).toBeGreaterThan(30);
    expect(series.filter((l) => !l.includes('kerf_instance="kerf-line1-saw"'))).toEqual([]);
  });

  it("keeps to a registry of its own", async () => {
    await new Metrics().text(snapshot(), NOW);
    expect(await register.getMetricsAsJSON()).toEqual([]);
  });
});
