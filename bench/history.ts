import type { Client } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils.js';
import type { BenchEnv, FerryPair } from './env.js';
import type { BenchContext, BenchRow } from './types.js';

/**
 * History events per workflow of one tiny in-cluster File push, by event type, and for activities,
 * local activities, updates and signals by name: where each event goes.
 */

export type WorkflowRole = 'consumerProcess' | 'consumerFlow' | 'providerProcess' | 'providerFlow';
export const WORKFLOW_LABELS: Record<WorkflowRole, string> = {
  consumerProcess: 'consumer TransferProcess',
  consumerFlow: 'consumer DataFlow',
  providerProcess: 'provider TransferProcess',
  providerFlow: 'provider DataFlow',
};

export interface HistoryCount {
  workflowId: string;
  events: number;
  /** Event type (`ActivityTaskScheduled`, …) → count. */
  byType: Record<string, number>;
  /** `activity <name>`, `local activity <name>`, `update <name>`, `signal <name>` → count. */
  byName: Record<string, number>;
  activities: number;
  localActivities: number;
}

interface RawEvent {
  eventType?: string;
  activityTaskScheduledEventAttributes?: { activityType?: { name?: string } };
  markerRecordedEventAttributes?: { markerName?: string; details?: Record<string, { payloads?: { data?: string }[] }> };
  workflowExecutionUpdateAcceptedEventAttributes?: { acceptedRequest?: { input?: { name?: string } } };
  workflowExecutionSignaledEventAttributes?: { signalName?: string };
  upsertWorkflowSearchAttributesEventAttributes?: { searchAttributes?: { indexedFields?: Record<string, unknown> } };
}

const typeName = (t: string): string =>
  t
    .replace(/^EVENT_TYPE_/, '')
    .toLowerCase()
    .replace(/(^|_)([a-z])/g, (_, __, c: string) => c.toUpperCase());

/** A local activity's type, from its marker (the SDK records it in the marker's `data` payload). */
function localActivityType(e: RawEvent): string {
  const data = e.markerRecordedEventAttributes?.details?.data?.payloads?.[0]?.data;
  if (!data) return '?';
  try {
    const decoded = JSON.parse(Buffer.from(data, 'base64').toString('utf8')) as Record<string, unknown>;
    return String(decoded.activity_type ?? decoded.activityType ?? '?');
  } catch {
    return '?';
  }
}

export async function countHistory(client: Client, workflowId: string): Promise<HistoryCount> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  const events = (JSON.parse(historyToJSON(history)) as { events: RawEvent[] }).events;
  const byType: Record<string, number> = {};
  const byName: Record<string, number> = {};
  const bump = (m: Record<string, number>, k: string) => (m[k] = (m[k] ?? 0) + 1);
  let activities = 0;
  let localActivities = 0;
  for (const e of events) {
    const type = typeName(String(e.eventType ?? 'UNKNOWN'));
    bump(byType, type);
    if (e.activityTaskScheduledEventAttributes) {
      activities++;
      bump(byName, `activity ${e.activityTaskScheduledEventAttributes.activityType?.name ?? '?'}`);
    }
    if (e.markerRecordedEventAttributes?.markerName === 'core_local_activity') {
      localActivities++;
      bump(byName, `local activity ${localActivityType(e)}`);
    } else if (e.markerRecordedEventAttributes) {
      bump(byName, `marker ${e.markerRecordedEventAttributes.markerName ?? '?'}`); // e.g. core_patch: a patched() call
    }
    if (e.workflowExecutionUpdateAcceptedEventAttributes) bump(byName, `update ${e.workflowExecutionUpdateAcceptedEventAttributes.acceptedRequest?.input?.name ?? '?'}`);
    if (e.workflowExecutionSignaledEventAttributes) bump(byName, `signal ${e.workflowExecutionSignaledEventAttributes.signalName ?? '?'}`);
    if (e.upsertWorkflowSearchAttributesEventAttributes) {
      for (const k of Object.keys(e.upsertWorkflowSearchAttributesEventAttributes.searchAttributes?.indexedFields ?? {})) bump(byName, `search attribute ${k}`);
    }
  }
  return { workflowId, events: events.length, byType, byName, activities, localActivities };
}

export interface TransferHistories {
  processId: string;
  workflows: Record<WorkflowRole, HistoryCount>;
  /** The minimal one-activity workflow, run on the same server. */
  minimal: HistoryCount;
}

/** One tiny in-cluster push (run once per bench run, shared with the cost goal's baseline). */
export async function probeTransfer(env: BenchEnv, pair: FerryPair): Promise<TransferHistories> {
  const processId = `probe-${Date.now().toString(36)}`;
  await pair.start(processId);
  const state = await pair.awaitAll(processId);
  if (state !== 'COMPLETED') throw new Error(`the probe transfer ended ${state}, not COMPLETED`);
  // the provider's pid as the consumer recorded it
  const { counterpartyPid } = await pair.consumer.ferry.status('consumer', processId);
  const ids = pair.workflowIds(processId, counterpartyPid);
  const baseline = await env.baseline();
  const minimalId = `probe-minimal-${Date.now().toString(36)}`;
  await baseline.minimal(minimalId);
  const count = (role: WorkflowRole) => countHistory(role.startsWith('consumer') ? pair.consumer.client : pair.provider.client, ids[role]);
  return {
    processId,
    workflows: {
      consumerProcess: await count('consumerProcess'),
      consumerFlow: await count('consumerFlow'),
      providerProcess: await count('providerProcess'),
      providerFlow: await count('providerFlow'),
    },
    minimal: await countHistory(baseline.client, minimalId),
  };
}

const top = (m: Record<string, number>, n: number): string =>
  Object.entries(m)
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');

export function historyRows(h: TransferHistories): BenchRow[] {
  const min = h.minimal.events;
  const rows: BenchRow[] = (Object.keys(WORKFLOW_LABELS) as WorkflowRole[]).map((role) => {
    const c = h.workflows[role];
    return {
      goal: 'history',
      measure: `history events, ${WORKFLOW_LABELS[role]} of a tiny push`,
      ferry: c.events,
      baseline: min,
      ratio: c.events / min,
      unit: 'events',
      target: '≤ 40 events',
      note: `baseline: a minimal one-activity workflow; ratio = ferry/baseline. ${c.activities} activities, ${c.localActivities} local; most: ${top(c.byType, 4)}`,
    };
  });
  const total = Object.values(h.workflows).reduce((s, c) => s + c.events, 0);
  rows.push({
    goal: 'history',
    measure: 'history events, all four workflows of a tiny push',
    ferry: total,
    baseline: 4 * min,
    ratio: total / (4 * min),
    unit: 'events',
    target: '≤ 160 events (40 each)',
    note: 'baseline: four minimal one-activity workflows; the breakdown by type and name is in bench/results/latest.md',
  });
  return rows;
}

export async function run(ctx: BenchContext, env: BenchEnv): Promise<BenchRow[]> {
  const h = await env.probe();
  ctx.attach('history', h);
  return historyRows(h);
}
