import { continueAsNew, log, proxyActivities, setCurrentDetails, sleep } from '@temporalio/workflow';
import type { ControlPlaneActivities } from '../activities/controlPlane.js';
import type { Suspect, WatchdogInput } from '../src/Watchdog.js';

/**
 * One per connector: every interval, a sweep of the connector's STARTED transfers (src/Watchdog.ts).
 * What a sweep finds suspicious is carried to the next one; the history is renewed (continue-as-new)
 * every 100 sweeps.
 */
export async function connectorWatchdog(input: WatchdogInput): Promise<void> {
  let suspects: Record<string, Suspect> = input.suspects ?? {};
  let intervalMs = input.intervalMs;
  const acts = proxyActivities<ControlPlaneActivities>({
    startToCloseTimeout: '30m',
    heartbeatTimeout: '1m',
    retry: { maximumAttempts: 3, initialInterval: '5s' },
    summary: `check the STARTED transfers of ${input.connectorId}`,
  });
  for (let sweep = 1; sweep <= 100; sweep++) {
    setCurrentDetails(`next sweep of ${input.connectorId}'s STARTED transfers in ${Math.round(intervalMs / 1000)} s; ${Object.keys(suspects).length} suspect`);
    await sleep(intervalMs, { summary: 'watchdog interval' });
    try {
      const result = await acts.sweepStartedTransfers({ connectorId: input.connectorId, suspects });
      suspects = result.suspects;
      intervalMs = result.intervalMs;
      if (result.alarms) log.warn('watchdog raised alarms', { connectorId: input.connectorId, checked: result.checked, alarms: result.alarms });
    } catch (e) {
      // a failed sweep is tried again at the next interval; the transfers are no worse off
      log.warn('watchdog sweep failed', { connectorId: input.connectorId, error: (e as Error).message });
    }
  }
  await continueAsNew<typeof connectorWatchdog>({ ...input, intervalMs, suspects });
}
