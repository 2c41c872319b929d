import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, mkdirSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils.js';
import { dataFlowStatusQuery, type DataFlowStatus } from '../../src/DataFlow.js';
import { dataFlowWorkflowId, transferProcessWorkflowId } from '../../src/ids.js';
import { transferProcessStatusQuery, type TransferProcessStatus } from '../../src/TransferProcess.js';
import type { FerryClient } from '../../src/client.js';

/** Writes `bytes` random bytes to `<root>/<rel>` and returns the path and its sha256. */
export function makeAsset(root: string, rel: string, bytes: number): { file: string; sha256: string } {
  const file = path.join(root, rel);
  mkdirSync(path.dirname(file), { recursive: true });
  const data = randomBytes(bytes);
  writeFileSync(file, data);
  return { file, sha256: createHash('sha256').update(data).digest('hex') };
}

/**
 * A File asset no rate-limited push finishes while a test runs (64 GiB, sparse: it takes no disk), for
 * tests that suspend or terminate a push in flight: a finite asset would make them race its end.
 */
export function makeEndlessAsset(root: string, rel: string): string {
  const file = path.join(root, rel);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, '');
  truncateSync(file, 64 * 1024 ** 3);
  return file;
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** The states a process went through, notes folded (a note repeats its state). */
export function statesOf(status: { history: { state: string }[] }): string[] {
  return status.history.map((h) => h.state).filter((s, i, all) => i === 0 || all[i - 1] !== s);
}

export function processStatus(client: Client, connectorId: string, processId: string): Promise<TransferProcessStatus> {
  return client.workflow.getHandle(transferProcessWorkflowId(connectorId, processId)).query(transferProcessStatusQuery);
}

export function flowStatus(client: Client, connectorId: string, processId: string): Promise<DataFlowStatus> {
  return client.workflow.getHandle(dataFlowWorkflowId(connectorId, processId)).query(dataFlowStatusQuery);
}

/** The provider process id of a consumer process (known once REQUESTED). */
export async function providerPidOf(ferry: FerryClient, consumer: string, consumerPid: string): Promise<string> {
  const s = await ferry.waitForState(consumer, consumerPid, ['REQUESTED', 'STARTUP_REQUESTED', 'STARTING', 'STARTED', 'COMPLETING', 'COMPLETED', 'SUSPENDED', 'TERMINATED']);
  if (!s.counterpartyPid) throw new Error(`no provider pid yet for ${consumerPid}`);
  return s.counterpartyPid;
}

/** Every payload of a workflow's history, decoded: what the Web UI would show of it. */
export async function historyPayloads(client: Client, workflowId: string): Promise<string> {
  const json = historyToJSON(await client.workflow.getHandle(workflowId).fetchHistory());
  return [...json.matchAll(/"data":\s*"([A-Za-z0-9+/=]+)"/g)].map((m) => Buffer.from(m[1]!, 'base64').toString('utf8')).join('\n');
}

/**
 * What a healthy workflow shows: no defect in its status, no failed workflow task in its history.
 * UNHANDLED_COMMAND (and _UPDATE) is not a failure of the workflow: the server refuses a task's
 * completion because new events (a late signal) arrived meanwhile, and the task runs again with them.
 */
export async function workflowHealth(client: Client, workflowId: string): Promise<{ defects: string[]; taskFailures: string[] }> {
  const handle = client.workflow.getHandle(workflowId);
  const status = (await handle.query('status')) as { defects?: string[] };
  const history = await handle.fetchHistory();
  const RACED = [1, 31]; // WorkflowTaskFailedCause UNHANDLED_COMMAND, UNHANDLED_UPDATE
  const taskFailures = (history.events ?? []).flatMap((e) => {
    const failed = e.workflowTaskFailedEventAttributes;
    if (!failed || RACED.includes(failed.cause ?? 0)) return [];
    return [`${failed.cause}: ${failed.failure?.message ?? 'workflow task failed'}`];
  });
  return { defects: status.defects ?? [], taskFailures };
}
