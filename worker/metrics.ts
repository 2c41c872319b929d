import type { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { ActivityInterceptors } from '@temporalio/worker';
import { ferryMetrics } from '../src/metrics.js';

/**
 * ferry's metrics and log ids from activities, without touching the activities: an activity
 * interceptor times the signaling and provisioning calls, counts retries, failures and bytes moved
 * (stale waits are counted by the workflow itself), and puts the transfer's processId/flowId on every activity log line.
 * Metrics go to the SDK's metric meter (one Prometheus endpoint per process, see runtime.ts).
 */

/** Remembers the last `size` keys (flows already counted as started in this process). */
class RecentKeys {
  private readonly keys = new Set<string>();
  constructor(private readonly size: number) {}
  /** True the first time a key is seen (among the last `size`). */
  add(key: string): boolean {
    if (this.keys.has(key)) return false;
    this.keys.add(key);
    if (this.keys.size > this.size) this.keys.delete(this.keys.values().next().value!);
    return true;
  }
}

interface LooseRequest {
  op?: string;
  flowId?: string;
  processId?: string;
  provisioner?: string;
  flow?: { flowId?: string; processId?: string; role?: string; connectorId?: string };
  message?: { transferType?: string };
  source?: { endpointType?: string };
  destination?: { endpointType?: string };
}

/** processId/flowId of an activity's request, for its log lines. */
export function idsOfRequest(req: LooseRequest | undefined): Record<string, string> {
  if (!req || typeof req !== 'object') return {};
  const ids: Record<string, string> = {};
  const processId = req.flow?.processId ?? req.processId;
  const flowId = req.flowId ?? req.flow?.flowId;
  if (typeof processId === 'string') ids.processId = processId;
  if (typeof flowId === 'string') ids.flowId = flowId;
  if (typeof req.flow?.connectorId === 'string') ids.connectorId = req.flow.connectorId;
  return ids;
}

const errorType = (e: unknown): string => (e instanceof ApplicationFailure ? (e.type ?? 'ApplicationFailure') : e instanceof Error ? e.name : 'unknown');

export function activityInterceptors(): (ctx: Context) => ActivityInterceptors {
  const started = new RecentKeys(10_000);
  return (ctx) => {
    const metrics = ferryMetrics(ctx.metricMeter);
    let ids: Record<string, string> = {};
    return {
      inbound: {
        async execute(input, next) {
          const activity = ctx.info.activityType;
          const req = input.args[0] as LooseRequest | undefined;
          ids = idsOfRequest(req);
          if (ctx.info.attempt > 1) metrics.activityRetries.add(1);
          const resumedFrom = (ctx.info.heartbeatDetails as { offset?: number } | undefined)?.offset ?? 0;
          const t0 = Date.now();
          const observe = (outcome: 'ok' | 'error', result?: unknown) => {
            const ms = Date.now() - t0;
            switch (activity) {
              case 'callDataPlane': {
                metrics.signalingLatency.record(ms, { op: req?.op ?? 'unknown', outcome });
                const firstCall = (req?.op === 'prepare' && req.flow?.role === 'CONSUMER') || (req?.op === 'start' && req.flow?.role === 'PROVIDER');
                if (outcome === 'ok' && firstCall && started.add(`${req?.flow?.connectorId}/${req?.flow?.flowId}`)) {
                  metrics.transfersStarted.add(1, { role: req!.flow!.role!, transfer_type: req?.message?.transferType ?? 'unknown' });
                }
                break;
              }
              case 'provision':
              case 'deprovision':
                metrics.provisioningLatency.record(ms, { op: activity, provisioner: req?.provisioner ?? 'unknown', outcome });
                break;
              case 'transfer': {
                const bytes = (result as { bytes?: number } | undefined)?.bytes;
                if (outcome === 'ok' && typeof bytes === 'number' && bytes > resumedFrom) {
                  metrics.bytesMoved.add(bytes - resumedFrom, { source_type: req?.source?.endpointType ?? 'unknown', destination_type: req?.destination?.endpointType ?? 'unknown' });
                }
                break;
              }
            }
          };
          try {
            const result = await next(input);
            observe('ok', result);
            return result;
          } catch (e) {
            observe('error');
            metrics.activityFailures.add(1, { error: errorType(e), final: e instanceof ApplicationFailure && e.nonRetryable === true });
            throw e;
          }
        },
      },
      outbound: {
        getLogAttributes: (attrs, next) => next({ ...attrs, ...ids }),
      },
    };
  };
}
