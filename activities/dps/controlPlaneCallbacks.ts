import { randomUUID } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import type { DpsControlPlane } from '../../src/config.js';
import { toWireAddress, type ControlPlaneRegistration, type DpsState } from '../../src/dps.js';
import type { DataPlaneCallback } from '../../src/TransferProcess.js';
import type { DpsAuth } from './auth.js';
import { PendingCallbacks, type JsonRecords } from './stateStore.js';

/**
 * The data plane's side of DPS callbacks: which control planes it knows (configured, or registered
 * with `PUT /controlplanes`; a registration replaces what it names), and the callbacks
 * (`POST {endpoint}/transfers/{processId}/dataflow/prepared|started|completed|errored`).
 */
export class ControlPlaneDirectory {
  constructor(
    private readonly configured: DpsControlPlane[],
    private readonly registered: JsonRecords<DpsControlPlane>,
  ) {}

  get(id: string): DpsControlPlane | undefined {
    const configured = this.configured.find((c) => c.id === id);
    const registered = this.registered.get(id);
    // a registration replaces endpoint and keys; the tokens of a configured entry stay (they are never on the wire)
    return registered ? { ...registered, ...pickTokens(configured) } : configured;
  }

  all(): DpsControlPlane[] {
    const ids = new Set([...this.registered.values().map((r) => r.id), ...this.configured.map((c) => c.id)]);
    return [...ids].map((id) => this.get(id)!);
  }

  register(msg: ControlPlaneRegistration): DpsControlPlane {
    const auth = msg.authorization;
    const entry: DpsControlPlane = {
      id: msg.controlplaneId,
      endpoint: msg.endpoint,
      ...(auth?.jwks ? { jwks: auth.jwks } : {}),
      ...(auth?.jwksUri ? { jwksUri: auth.jwksUri } : {}),
    };
    this.registered.set(entry.id, entry);
    return this.get(entry.id)!;
  }

  remove(id: string): boolean {
    return this.registered.delete(id);
  }
}

const pickTokens = (c: DpsControlPlane | undefined) => ({
  ...(c?.inboundToken ? { inboundToken: c.inboundToken } : {}),
  ...(c?.outboundToken ? { outboundToken: c.outboundToken } : {}),
});

/** The sentinel `callbackWorkflowId` of a flow a DPS control plane drives (its callbacks go over HTTP). */
const DPS_CALLBACK_PREFIX = 'dps-controlplane:';
export const dpsCallbackWorkflowId = (controlPlaneId: string): string => `${DPS_CALLBACK_PREFIX}${controlPlaneId}`;
export const controlPlaneOfCallbackId = (workflowId: string): string | undefined =>
  workflowId.startsWith(DPS_CALLBACK_PREFIX) ? workflowId.slice(DPS_CALLBACK_PREFIX.length) : undefined;

/** What the DPS API records of a flow it created (the DataFlow's memo). */
export interface DpsFlowMemo {
  controlPlaneId: string;
  transferType: string;
  profile: string;
  role: 'CONSUMER' | 'PROVIDER';
  participantId?: string;
  counterPartyId?: string;
  /** The messageId of the start that created the flow: the same message again is a retry, answered like the first. */
  startMessageId?: string;
}
export const DPS_MEMO_KEY = 'dps';

export interface DpsCallbackDeps {
  client: Client;
  auth: DpsAuth;
  controlPlanes: ControlPlaneDirectory;
  pending: PendingCallbacks;
  /** How long a callback waits for the API to decide whether its call was answered 202. */
  decisionWaitMs: number;
  requestTimeoutMs?: number;
}

/**
 * Sends the DPS callback for a DataFlow's outcome. prepare/start results go out only for calls
 * answered 202; the end of the bytes goes out as `completed` (or `errored`); suspend and terminate
 * are synchronous in DPS, so their release outcome only shows in `GET /dataflows/{id}/status`.
 */
export async function sendDpsCallback(
  deps: DpsCallbackDeps,
  req: { controlPlaneId: string; dataFlowWorkflowId: string; callback: DataPlaneCallback },
): Promise<void> {
  const { callback } = req;
  if (callback.op === 'suspend' || callback.op === 'terminate') return;
  const key = PendingCallbacks.key(req.dataFlowWorkflowId, callback.op);
  if (callback.op !== 'transfer' && !(await deps.pending.wanted(key, deps.decisionWaitMs))) return;
  const cp = deps.controlPlanes.get(req.controlPlaneId);
  if (!cp) throw ApplicationFailure.nonRetryable(`control plane ${req.controlPlaneId} is not known (any more)`, 'UnknownControlPlane');
  const memo = await flowMemo(deps.client, req.dataFlowWorkflowId);
  const kind = !callback.ok ? 'errored' : callback.op === 'prepare' ? 'prepared' : callback.op === 'start' ? 'started' : 'completed';
  const state: DpsState = !callback.ok ? 'TERMINATED' : kind === 'prepared' ? 'PREPARED' : kind === 'started' ? 'STARTED' : 'COMPLETED';
  const address = callback.ok && callback.dataAddress && handsOut(memo, callback.op) ? callback.dataAddress : undefined;
  const body = {
    messageId: randomUUID(),
    dataFlowId: callback.flowId,
    state,
    ...(address ? { dataAddress: toWireAddress(address, memo?.transferType ?? '') } : {}),
    ...(callback.error ? { error: callback.error } : {}),
  };
  await postToControlPlane(deps, cp, `/transfers/${encodeURIComponent(callback.flowId)}/dataflow/${kind}`, body);
  if (callback.op !== 'transfer') deps.pending.sent(key);
}

/** A prepared push hands out where to push; a started pull hands out the EDR; nothing else carries an address. */
function handsOut(memo: DpsFlowMemo | undefined, op: DataPlaneCallback['op']): boolean {
  const pull = memo?.transferType.endsWith('-PULL') ?? false;
  return (op === 'prepare' && !pull) || (op === 'start' && pull && memo?.role === 'PROVIDER');
}

async function flowMemo(client: Client, workflowId: string): Promise<DpsFlowMemo | undefined> {
  const description = await client.workflow.getHandle(workflowId).describe();
  return description.memo?.[DPS_MEMO_KEY] as DpsFlowMemo | undefined;
}

async function postToControlPlane(deps: DpsCallbackDeps, cp: DpsControlPlane, path: string, body: unknown): Promise<void> {
  const authorization = await deps.auth.authorizationFor(cp);
  let res: Response;
  try {
    res = await fetch(`${cp.endpoint.replace(/\/+$/, '')}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) },
      body: JSON.stringify(body),
      redirect: 'error',
      signal: AbortSignal.timeout(deps.requestTimeoutMs ?? 10_000),
    });
  } catch (e) {
    throw new Error(`control plane ${cp.id} unreachable: ${(e as Error).message}`);
  }
  await res.arrayBuffer().catch(() => undefined);
  if (res.ok) return;
  const message = `control plane ${cp.id} answered HTTP ${res.status} to ${path}`;
  // a 4xx will not get better by retrying (but timeouts and throttling may)
  if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) throw ApplicationFailure.nonRetryable(message, 'CallbackRejected');
  throw new Error(message);
}
