import type { MetricCounter, MetricHistogram, MetricMeter } from '@temporalio/common';

/**
 * ferry's own metrics, on the SDK's MetricMeter so that they reach the same Prometheus endpoint
 * as the SDK's (the Runtime's `metricsBindAddress`). Workflow-safe: pass `metricMeter` from
 * `@temporalio/workflow` in a workflow (not emitted during replay), `Context.current().metricMeter`
 * in an activity, `Runtime.instance().metricMeter` elsewhere in a worker.
 *
 * Exported under these names as they are (no `temporal_` prefix, which only the SDK's own metrics
 * carry), with the tags below plus the SDK's: an activity's carry namespace, taskQueue and
 * activityType. Histograms are in milliseconds. See README "Metrics".
 */
export const METRIC = {
  transfersStarted: 'ferry_transfers_started',
  transfersEnded: 'ferry_transfers_ended',
  signalingLatency: 'ferry_signaling_latency',
  provisioningLatency: 'ferry_provisioning_latency',
  bytesMoved: 'ferry_bytes_moved',
  staleDetections: 'ferry_stale_detections',
  activityRetries: 'ferry_activity_retries',
  activityFailures: 'ferry_activity_failures',
} as const;

export interface FerryMetrics {
  /** tags: role (CONSUMER|PROVIDER), transfer_type */
  transfersStarted: MetricCounter;
  /** For workflows: tags role, transfer_type, state (COMPLETED|TERMINATED), kind (completed|failed|requested). */
  transfersEnded: MetricCounter;
  /** A data-plane signaling call (prepare/start/suspend/resume/terminate/complete), ms. tags: op, outcome (ok|error) */
  signalingLatency: MetricHistogram;
  /** One provision or deprovision activity, ms. tags: op, provisioner, outcome */
  provisioningLatency: MetricHistogram;
  /** Bytes a transfer attempt moved. tags: source_type, destination_type */
  bytesMoved: MetricCounter;
  /** A `*_REQUESTED` wait ran out and the control plane asked the data plane again. */
  staleDetections: MetricCounter;
  /** An activity attempt after the first (tag activityType from the SDK). */
  activityRetries: MetricCounter;
  /** An activity attempt that failed. tags: error (error type), final (non-retryable) */
  activityFailures: MetricCounter;
}

export function ferryMetrics(meter: MetricMeter): FerryMetrics {
  return {
    transfersStarted: meter.createCounter(METRIC.transfersStarted, 'transfers', 'Transfers started, by role and transfer type'),
    transfersEnded: meter.createCounter(METRIC.transfersEnded, 'transfers', 'Transfers ended, by role, type, final state and kind of end'),
    signalingLatency: meter.createHistogram(METRIC.signalingLatency, 'int', 'ms', 'Latency of data-plane signaling calls from the control plane'),
    provisioningLatency: meter.createHistogram(METRIC.provisioningLatency, 'int', 'ms', 'Latency of provision and deprovision activities'),
    bytesMoved: meter.createCounter(METRIC.bytesMoved, 'bytes', 'Bytes moved by transfer activities'),
    staleDetections: meter.createCounter(METRIC.staleDetections, 'detections', 'Stale *_REQUESTED waits detected'),
    activityRetries: meter.createCounter(METRIC.activityRetries, 'attempts', 'Activity attempts after the first'),
    activityFailures: meter.createCounter(METRIC.activityFailures, 'attempts', 'Failed activity attempts'),
  };
}
