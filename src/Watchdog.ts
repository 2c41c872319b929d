import { defineSignal } from '@temporalio/workflow';
import type { WatchAlarm } from './TransferProcess.js';

/**
 * The connector watchdog: one workflow per connector (control plane) that looks, every
 * `interval`, at its STARTED transfers (visibility), checks that each one's data flow is there and
 * running and that its counterparty's process is live, and signals the transfers that need
 * attention. A healthy transfer adds nothing to its own history, and no worker slot is held per
 * transfer.
 */
export const CONNECTOR_WATCHDOG_WORKFLOW = 'connectorWatchdog';
export const watchdogWorkflowId = (connectorId: string): string => `watchdog-${connectorId}`;

/** What one sweep found strange but not yet alarming, by process id (it is checked again next time). */
export interface Suspect {
  flowSilentSince?: number;
  peerSilentSince?: number;
  /** The counterparty's process said it ended this way: once more on the next sweep is an alarm (its message had a whole interval to arrive). */
  peerEnded?: 'COMPLETED' | 'TERMINATED';
}

export interface WatchdogInput {
  connectorId: string;
  /** The first interval; each sweep brings the worker's current one. */
  intervalMs: number;
  /** Carried over continue-as-new. */
  suspects?: Record<string, Suspect>;
}

export interface SweepResult {
  checked: number;
  alarms: number;
  suspects: Record<string, Suspect>;
  /** The interval and bound the worker is configured with now (a changed config takes effect at the next sweep). */
  intervalMs: number;
  lostAfterMs: number;
}

/** The watchdog tells a transfer what it found: its table decides (in STARTED it acts; later it ignores). */
export const watchdogAlarmSignal = defineSignal<[WatchAlarm]>('watchdogAlarm');
