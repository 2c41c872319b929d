import { randomUUID } from 'node:crypto';
import { ApplicationFailure, Context } from '@temporalio/activity';
import type { DataPlaneInstance, DpsSignalingConfig } from '../../src/config.js';
import type { DataAddress } from '../../src/DataAddress.js';
import type { DataFlowInput, DataFlowResponse } from '../../src/DataFlow.js';
import type { DataFlowState } from '../../src/DataFlowState.js';
import {
  dataFlowStateOfDps,
  DataFlowStatusWireSchema,
  FERRY_METADATA,
  fromWireAddress,
  profileOfTransferType,
  toWireAddress,
  transferTypeOfProfile,
  type DataPlaneRegistration,
} from '../../src/dps.js';
import { TRANSFER_TYPES, type TransferType } from '../../src/TransferProcess.js';
import type { DataFlowCall } from '../dataFlowCalls.js';
import type { DpsAuth, DpsPeer } from './auth.js';
import type { JsonRecords } from './stateStore.js';

/**
 * The control plane's side of DPS: the data planes it drives over HTTP (configured with a `dps`
 * block, or registered with `PUT /dataplanes`) and the signaling calls to them. The TransferProcess
 * does not know: `callDataPlane` answers the same `DataFlowResponse` (202 = async) either way.
 */
export interface DpsDataPlane extends DpsPeer {
  url: string;
  transferTypes: TransferType[];
  profiles?: string[];
  /** Accept its callbacks without credentials (a network that authenticates elsewhere). */
  acceptUnauthenticated?: boolean;
}

export class DataPlaneDirectory {
  constructor(
    private readonly configured: DataPlaneInstance[],
    private readonly registered: JsonRecords<DpsDataPlane>,
  ) {}

  /** A DPS data plane by id, or undefined (a Temporal data plane, or none). */
  dps(id: string): DpsDataPlane | undefined {
    const registered = this.registered.get(id);
    if (registered) {
      const c = this.configured.find((d) => d.id === id)?.dps;
      // tokens are configuration, never on the wire: a registration keeps them
      return { ...registered, ...(c?.inboundToken ? { inboundToken: c.inboundToken } : {}), ...(c?.outboundToken ? { outboundToken: c.outboundToken } : {}) };
    }
    const c = this.configured.find((d) => d.id === id);
    return c?.dps ? { id: c.id, transferTypes: c.transferTypes, ...c.dps } : undefined;
  }

  /** Every data plane with the transfer types it serves. */
  all(): { id: string; transferTypes: readonly string[]; dps: boolean }[] {
    const reg = this.registered.values();
    return [
      ...this.configured.filter((c) => !reg.some((r) => r.id === c.id)).map((c) => ({ id: c.id, transferTypes: c.transferTypes, dps: !!c.dps })),
      ...reg.map((r) => ({ id: r.id, transferTypes: r.transferTypes, dps: true })),
    ];
  }

  dpsPeers(): DpsDataPlane[] {
    return this.all()
      .filter((d) => d.dps)
      .map((d) => this.dps(d.id)!);
  }

  register(msg: DataPlaneRegistration): DpsDataPlane {
    const transferTypes = [...new Set(msg.profiles.map(transferTypeOfProfile).filter((t): t is TransferType => !!t))];
    if (!transferTypes.length) throw new Error(`none of the profiles ${msg.profiles.join(', ')} is a transfer type of this control plane (${TRANSFER_TYPES.join(', ')})`);
    const auth = msg.authorization;
    const entry: DpsDataPlane = {
      id: msg.dataplaneId,
      url: msg.endpoint,
      profiles: msg.profiles,
      transferTypes,
      ...(auth?.jwks ? { jwks: auth.jwks } : {}),
      ...(auth?.jwksUri ? { jwksUri: auth.jwksUri } : {}),
    };
    this.registered.set(entry.id, entry);
    return this.dps(entry.id)!;
  }

  remove(id: string): boolean {
    return this.registered.delete(id);
  }
}

/** What a DPS message needs that the DataFlow contract does not carry: the transfer around the flow. */
export interface TransferContext {
  transferType: string;
  agreementId: string;
  datasetId: string;
  participantId: string;
  counterPartyId: string;
}

export interface DpsDataPlaneClientDeps {
  signaling: DpsSignalingConfig;
  auth: DpsAuth;
}

type Failure = { status: number; body: string };

/** One signaling call to a DPS data plane, answered as the in-cluster path answers. */
export async function callDpsDataPlane(
  deps: DpsDataPlaneClientDeps,
  plane: DpsDataPlane,
  req: { flow: DataFlowInput } & DataFlowCall,
  ctx: TransferContext,
): Promise<DataFlowResponse> {
  const id = encodeURIComponent(req.flow.processId);
  const pull = ctx.transferType.endsWith('-PULL');
  const wire = (a: DataAddress | undefined) => (a ? toWireAddress(a, ctx.transferType) : undefined);
  const flowMessage = () => ({
    messageId: stableMessageId(),
    participantId: ctx.participantId,
    counterPartyId: ctx.counterPartyId,
    dataspaceContext: deps.signaling.dataspaceContext,
    processId: req.flow.processId,
    agreementId: ctx.agreementId,
    datasetId: ctx.datasetId,
    profile: plane.profiles?.find((p) => transferTypeOfProfile(p) === ctx.transferType) ?? profileOfTransferType(ctx.transferType),
    claims: {},
  });
  // ferry's own data planes find the addresses here; others ignore it
  const metadata = (m: Record<string, DataAddress | undefined>) => {
    const entries = Object.entries(m).filter(([, v]) => v);
    return entries.length ? { metadata: Object.fromEntries(entries) } : {};
  };
  let path: string;
  let body: unknown;
  switch (req.op) {
    case 'prepare':
      path = '/dataflows/prepare';
      body = { ...flowMessage(), ...metadata({ [FERRY_METADATA.destination]: req.message.destination }) };
      break;
    case 'start': {
      const m = req.message;
      if (req.flow.role === 'CONSUMER') {
        // the consumer's data plane hears that the provider started (a pull: where to pull from)
        path = `/dataflows/${id}/started`;
        body = { messageId: randomUUID(), ...(pull && m.source ? { dataAddress: wire(m.source) } : {}) };
      } else {
        path = '/dataflows/start';
        body = { ...flowMessage(), ...(!pull && m.destination ? { dataAddress: wire(m.destination) } : {}), ...metadata({ [FERRY_METADATA.source]: m.source }) };
      }
      break;
    }
    case 'resume': {
      const m = req.message;
      const address = req.flow.role === 'CONSUMER' ? (pull ? m.source : undefined) : pull ? undefined : m.destination;
      path = `/dataflows/${id}/resume`;
      body = { messageId: randomUUID(), ...(address ? { dataAddress: wire(address) } : {}) };
      break;
    }
    case 'suspend':
    case 'terminate':
      path = `/dataflows/${id}/${req.op}`;
      body = { messageId: randomUUID(), ...(req.message.reason ? { reason: req.message.reason } : {}) };
      break;
    case 'complete':
      path = `/dataflows/${id}/completed`;
      body = undefined;
      break;
  }
  const answer = await send(deps, plane, 'POST', path, body);
  if ('status' in answer && answer.status !== 200 && answer.status !== 202) {
    const f = answer as Failure;
    // a second start for a process is refused by DPS (a retry of ours carries the first one's messageId
    // and is answered like it by ferry's data planes): the flow exists, so ask where it stands
    if (f.status === 409 && req.op === 'start' && req.flow.role === 'PROVIDER') {
      const seen = await dpsDataFlowState(deps, plane, req.flow.processId);
      if (seen.found && seen.state === 'PROVISIONING') return { state: 'PROVISIONING', async: true };
      if (seen.found && seen.state !== 'RECEIVED' && seen.state !== 'TERMINATED') return { state: seen.state!, async: false };
    }
    // a flow the data plane no longer knows has nothing left to end
    if (f.status === 404 && (req.op === 'terminate' || req.op === 'complete')) return { state: 'TERMINATED', async: false };
    throw refusal(plane, req.op, f);
  }
  const ok = answer as { status: 200 | 202; json: unknown };
  if (ok.status === 202) return { state: 'PROVISIONING', async: true };
  const parsed = DataFlowStatusWireSchema.partial({ state: true }).safeParse(ok.json ?? {});
  if (!parsed.success) throw ApplicationFailure.nonRetryable(`data plane ${plane.id} answered ${req.op} with an invalid message`, 'DataPlaneRefused');
  const reply = parsed.data;
  if (reply.state === 'TERMINATED' && req.op !== 'terminate') {
    throw ApplicationFailure.nonRetryable(`data plane ${plane.id} failed ${req.op}: ${reply.error ?? 'terminated'}`, 'DataPlaneRefused');
  }
  const fallback: Record<DataFlowCall['op'], DataFlowState> = { prepare: 'PROVISIONED', start: 'STARTED', resume: 'STARTED', suspend: 'SUSPENDED', terminate: 'TERMINATED', complete: 'COMPLETED' };
  // only a prepared push and a started (or resumed) provider pull hand out an address
  const handsOut = (req.op === 'prepare' && !pull) || ((req.op === 'start' || req.op === 'resume') && pull && req.flow.role === 'PROVIDER');
  let dataAddress: DataAddress | undefined;
  if (handsOut && reply.dataAddress) {
    try {
      dataAddress = fromWireAddress(reply.dataAddress, pull ? 'pull' : 'push');
    } catch (e) {
      throw ApplicationFailure.nonRetryable(`data plane ${plane.id} answered ${req.op} with an unusable dataAddress: ${(e as Error).message}`, 'DataPlaneRefused');
    }
  }
  return { state: reply.state ? dataFlowStateOfDps(reply.state) : fallback[req.op], async: false, ...(dataAddress ? { dataAddress } : {}) };
}

/**
 * The same id on every retry of one activity (a DPS peer can tell a retry from a second message);
 * a fresh one outside an activity.
 */
function stableMessageId(): string {
  try {
    const info = Context.current().info;
    return info.workflowExecution ? `${info.workflowExecution.workflowId}/${info.activityId}` : randomUUID();
  } catch {
    return randomUUID();
  }
}

/** `GET /dataflows/{id}/status`, for stale waits. */
export async function dpsDataFlowState(deps: DpsDataPlaneClientDeps, plane: DpsDataPlane, processId: string): Promise<{ found: boolean; state?: DataFlowState }> {
  const answer = await send(deps, plane, 'GET', `/dataflows/${encodeURIComponent(processId)}/status`);
  if (answer.status === 404) return { found: false };
  if (answer.status !== 200) throw new Error(`data plane ${plane.id} answered status with HTTP ${answer.status}`);
  const parsed = DataFlowStatusWireSchema.safeParse((answer as { json: unknown }).json);
  if (!parsed.success) throw new Error(`data plane ${plane.id} answered status with an invalid message`);
  return { found: true, state: dataFlowStateOfDps(parsed.data.state) };
}

async function send(deps: DpsDataPlaneClientDeps, plane: DpsDataPlane, method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; json?: unknown } & Partial<Failure>> {
  const authorization = await deps.auth.authorizationFor(plane);
  let res: Response;
  try {
    res = await fetch(`${plane.url.replace(/\/+$/, '')}${path}`, {
      method,
      headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...(authorization ? { authorization } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      redirect: 'error',
      signal: AbortSignal.timeout(deps.signaling.requestTimeoutMs),
    });
  } catch (e) {
    throw new Error(`data plane ${plane.id} unreachable: ${(e as Error).message}`); // retried
  }
  const text = await res.text().catch(() => '');
  if (res.status >= 500 || res.status === 408 || res.status === 429) throw new Error(`data plane ${plane.id} answered ${path} with HTTP ${res.status}`); // retried
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return res.ok ? { status: res.status, json } : { status: res.status, body: text.slice(0, 500) };
}

function refusal(plane: DpsDataPlane, op: string, f: Failure): ApplicationFailure {
  let why = f.body;
  try {
    why = (JSON.parse(f.body) as { error?: string }).error ?? f.body;
  } catch {
    // plain text
  }
  return ApplicationFailure.nonRetryable(`data plane ${plane.id} refused ${op} (HTTP ${f.status}): ${why}`, 'DataPlaneRefused');
}
