import { proxyActivities, proxyLocalActivities } from '@temporalio/workflow';
import type * as activities from './activities.js';

/**
 * Baseline workflows of `npm run bench`: what Temporal itself costs, measured on the same server
 * with the same worker settings as ferry's workflows.
 */

const remote = proxyActivities<typeof activities>({ startToCloseTimeout: '30s' });
const local = proxyLocalActivities<typeof activities>({ startToCloseTimeout: '10s' });

/** The minimal workflow: one activity, then done (11 history events). */
export async function minimalWorkflow(): Promise<void> {
  await remote.noop();
}

/** A minimal workflow with `activities` activities and `localActivities` local activities, one after the other. */
export async function activitiesWorkflow(activityCount: number, localActivityCount: number): Promise<void> {
  for (let i = 0; i < activityCount; i++) await remote.noop();
  for (let i = 0; i < localActivityCount; i++) await local.noop();
}
