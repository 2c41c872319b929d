import type { MetricCounter, MetricHistogram, MetricMeter } from '@temporalio/common';

/**
 * ferry's own metrics from activities, on the SDK's MetricMeter so that they reach the same Prometheus endpoint
 * as the SDK's (the Runtime's `metricsBindAddress`): `Context.current().metricMeter` in an activity
 * (worker/metrics.ts does it for every activity), `Runtime.instance().metricMeter` elsewhere in a
 * worker. The workflows count their own (transitions, stale waits, callback retries, defects) with
 * `metricMeter` from `@temporalio/workflow`; a workflow could use this module too (it is
 * workflow-safe: types only).
 *
 * Exported under these names as they are (no `temporal_` prefix, which only the SDK's own metrics
 * carry), with the tags below plus the SDK's: an activity's carry namespace, taskQueue and
 * activityType. Histograms are in milliseconds. See README "Metrics".
 */
export const METRIC = {
  transfersStarted: 'ferry_transfers_started',
  signalingLatency: 'ferry_signaling_latency',
  provisioningLatency: 'ferry_provisioning_latency',
  bytesMoved: 'ferry_bytes_moved',
  activityRetries: 'ferry_activity_retries',
  activityFailures: 'ferry_activity_failures',
} as const;

export interface FerryMetrics {
  /** tags: role (CONSUMER|PROVIDER), transfer_type */
  transfersStarted: MetricCounter;
  /** A data-plane signaling call (prepare/start/suspend/resume/terminate/complete), ms. tags: op, outcome (ok|error) */
  signalingLatency: MetricHistogram;
  /** One provision or deprovision activity, ms. tags: op, provisioner, outcome */
  provisioningLatency: MetricHistogram;
  /** Bytes a transfer attempt moved. tags: source_type, destination_type */
  bytesMoved: MetricCounter;
  /** An activity attempt after the first (tag activityType from the SDK). */
  activityRetries: MetricCounter;
  /** An activity attempt that failed. tags: error (error type), final (non-retryable) */
  activityFailures: MetricCounter;
}

export function ferryMetrics(meter: MetricMeter): FerryMetrics {
  return {
    transfersStarted: meter.createCounter(METRIC.transfersStarted, 'transfers', 'Transfers started, by role and transfer type'),
    signalingLatency: meter.createHistogram(METRIC.signalingLatency, 'int', 'ms', 'Latency of data-plane signaling calls from the control plane'),
    provisioningLatency: meter.createHistogram(METRIC.provisioningLatency, 'int', 'ms', 'Latency of provision and deprovision activities'),
    bytesMoved: meter.createCounter(METRIC.bytesMoved, 'bytes', 'Bytes moved by transfer activities'),
    activityRetries: meter.createCounter(METRIC.activityRetries, 'attempts', 'Activity attempts after the first'),
    activityFailures: meter.createCounter(METRIC.activityFailures, 'attempts', 'Failed activity attempts'),
  };
}
