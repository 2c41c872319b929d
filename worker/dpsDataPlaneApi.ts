import { randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import { dpsErrorHandlers, DpsHttpError, requireAdmin } from './dpsHttp.js';
import { z } from 'zod';
import { callDataFlow, dataFlowStatus, dataFlowWorkflowIdOf, DataFlowExists, DataFlowGone, DataFlowRefused, type DataFlowCall, type DataFlowCallOptions } from '../activities/dataFlowCalls.js';
import type { DpsAuth } from '../activities/dps/auth.js';
import { DPS_MEMO_KEY, dpsCallbackWorkflowId, type ControlPlaneDirectory, type DpsFlowMemo } from '../activities/dps/controlPlaneCallbacks.js';
import { PendingCallbacks } from '../activities/dps/stateStore.js';
import type { DataPlaneConfig, DpsControlPlane, DpsDataPlaneConfig } from '../src/config.js';
import type { DataAddress } from '../src/DataAddress.js';
import { DataAddressSchema } from '../src/schemas/DataAddress.js';
import type { DataFlowInput, DataFlowResponse, DataFlowStartMessage, DataFlowStatus } from '../src/DataFlow.js';
import {
  ControlPlaneRegistrationSchema,
  DataFlowPrepareWireSchema,
  DataFlowReasonWireSchema,
  DataFlowResumeWireSchema,
  DataFlowStartedWireSchema,
  DataFlowStartWireSchema,
  dpsStateOf,
  DpsMessageError,
  FERRY_METADATA,
  fromWireAddress,
  profileOfTransferType,
  toWireAddress,
  transferTypeOfProfile,
  type DataFlowFlowWire,
  type DpsDataAddress,
} from '../src/dps.js';
import { trimSlash } from '../src/dsp.js';
import { dataPlaneTaskQueue } from '../src/ids.js';
import { planProvisioning, type ProvisionerMatch } from '../src/Provisioner.js';
import { isPull, type TransferType } from '../src/TransferProcess.js';

/**
 * ferry's data plane as a DPS data plane (Data Plane Signaling v1.0-RC3, HTTP): any DPS control
 * plane drives it. Every call becomes the same DataFlow update the in-cluster path sends
 * (activities/dataFlowCalls.ts), so behaviour is one implementation:
 *
 *   POST /dataflows/prepare → prepare (consumer)   POST /dataflows/start → start (provider)
 *   POST /dataflows/{id}/started → start (consumer) …/suspend, …/resume, …/terminate, …/completed
 *   GET  /dataflows/{id}/status                   PUT /controlplanes, DELETE /controlplanes/{id}
 *
 * `dataFlowId` is the control plane's `processId`. prepare and start answer 200 when provisioning
 * needs no external party (waiting up to `syncWaitMs` for it), 202 with `Location` otherwise (a
 * callback follows). Suspend, resume and terminate answer at once; releasing resources then goes
 * on in the background and shows in the status.
 */
export interface DpsDataPlaneApi {
  url: string;
  close(): Promise<void>;
}

export interface DpsDataPlaneApiOptions {
  config: DataPlaneConfig & { dps: DpsDataPlaneConfig };
  client: Client;
  auth: DpsAuth;
  controlPlanes: ControlPlaneDirectory;
  pending: PendingCallbacks;
  /** The provisioners that wait for an external party (a service that may answer "pending"): a call they apply to is answered 202 at once. */
  external: readonly ProvisionerMatch[];
}

/** How often the API looks at a flow while it waits for it to settle (provisioning, a suspension's release). */
const SETTLE_POLL_MS = 25;
const settling = (s: DataFlowStatus) => s.state === 'PROVISIONING' || (s.state === 'PROVISIONED' && s.role === 'PROVIDER');
const releasing = (s: DataFlowStatus) => s.state === 'DEPROVISIONING' || s.state === 'DEPROVISION_REQUESTED';

export async function startDpsDataPlaneApi(opts: DpsDataPlaneApiOptions): Promise<DpsDataPlaneApi> {
  const { config, client, auth, controlPlanes, pending } = opts;
  const dps = config.dps;
  const taskQueue = dataPlaneTaskQueue(config.instanceId);
  const app = Fastify({ bodyLimit: 1024 * 1024, logger: false });
  const base = dps.publicUrl ? trimSlash(new URL(dps.publicUrl).pathname) : '';

  const caller = async (req: FastifyRequest): Promise<DpsControlPlane> => {
    const cp = await auth.identify(req.headers.authorization, controlPlanes.all());
    if (!cp) throw new DpsHttpError(401, 'unknown caller');
    return cp as DpsControlPlane;
  };
  const admin = (req: FastifyRequest): void => requireAdmin(req, dps.adminToken);
  const parse = <T extends z.ZodType>(schema: T, body: unknown): z.infer<T> => {
    const result = schema.safeParse(body ?? {});
    if (!result.success) throw new DpsHttpError(400, z.prettifyError(result.error));
    return result.data;
  };
  const transferTypeOf = (msg: DataFlowFlowWire): TransferType => {
    const profile = (msg.profile ?? msg.transferType)!;
    const type = transferTypeOfProfile(profile);
    if (!type) throw new DpsHttpError(400, `unsupported profile ${JSON.stringify(profile)}`);
    return type;
  };
  /** An address a ferry control plane put in the metadata. */
  const ferryAddress = (msg: DataFlowFlowWire, key: string): DataAddress | undefined => {
    const raw = msg.metadata?.[key];
    if (raw === undefined) return undefined;
    const parsed = DataAddressSchema.safeParse(raw);
    if (!parsed.success) throw new DpsHttpError(400, `metadata ${key}: ${z.prettifyError(parsed.error)}`);
    return parsed.data;
  };
  const wireAddress = (wire: DpsDataAddress, use: 'push' | 'pull'): DataAddress => {
    try {
      return fromWireAddress(wire, use);
    } catch (e) {
      if (e instanceof DpsMessageError) throw new DpsHttpError(400, e.message);
      throw e;
    }
  };

  const flowInput = (cp: DpsControlPlane, processId: string, role: DataFlowInput['role']): DataFlowInput => ({
    flowId: processId,
    connectorId: cp.id,
    processId,
    role,
    instanceId: config.instanceId,
    callbackWorkflowId: dpsCallbackWorkflowId(cp.id),
    callback: { kind: 'dps', controlPlaneId: cp.id, baseUrl: cp.endpoint },
  });
  const memoOf = async (cp: DpsControlPlane, processId: string): Promise<DpsFlowMemo> => {
    const workflowId = dataFlowWorkflowIdOf({ connectorId: cp.id, processId });
    try {
      const memo = (await client.workflow.getHandle(workflowId).describe()).memo?.[DPS_MEMO_KEY] as DpsFlowMemo | undefined;
      if (memo) return memo;
    } catch {
      // not found
    }
    throw new DpsHttpError(404, `no data flow ${processId}`);
  };
  const existingMemo = (cp: DpsControlPlane, processId: string): Promise<DpsFlowMemo | undefined> => memoOf(cp, processId).catch(() => undefined);
  const statusOf = async (cp: DpsControlPlane, processId: string): Promise<DataFlowStatus> => {
    const status = await dataFlowStatus(client, { connectorId: cp.id, processId });
    if (!status) throw new DpsHttpError(404, `no data flow ${processId}`);
    return status;
  };
  /** Polls the flow while `busy` holds, up to `ms`. */
  const waitWhile = async (cp: DpsControlPlane, processId: string, busy: (s: DataFlowStatus) => boolean, ms: number): Promise<DataFlowStatus> => {
    const until = Date.now() + ms;
    let status = await statusOf(cp, processId);
    while (busy(status) && Date.now() < until) {
      await new Promise((r) => setTimeout(r, SETTLE_POLL_MS));
      status = await statusOf(cp, processId);
    }
    return status;
  };

  const call = async (cp: DpsControlPlane, processId: string, c: DataFlowCall, role: DataFlowInput['role'], opts: DataFlowCallOptions = {}): Promise<DataFlowResponse> => {
    try {
      return await callDataFlow(client, { flow: flowInput(cp, processId, role), taskQueue, ...c }, opts);
    } catch (e) {
      if (e instanceof DataFlowExists || e instanceof DataFlowRefused || e instanceof DataFlowGone) throw new DpsHttpError(409, e.message);
      throw e;
    }
  };

  /** The DPS status message for a flow, with the address the answer hands out (the control plane forwards it). */
  const statusMessage = (processId: string, status: DataFlowStatus, transferType: string, address?: DataAddress) => ({
    messageId: randomUUID(),
    dataFlowId: processId,
    state: dpsStateOf(status),
    ...(address ? { dataAddress: toWireAddress(address, transferType) } : {}),
    ...(status.error && (status.state === 'FAILED' || status.state === 'DEPROVISION_FAILED') ? { error: status.error } : {}),
  });

  /**
   * prepare/start: the update answers at once; when it started provisioning, wait a moment for
   * provisioners that need nobody else (they finish in no time) and answer 200 with the result,
   * else 202 (a pending external provisioner, or slow): then the callback carries the result.
   */
  const openFlow = async (
    reply: FastifyReply,
    cp: DpsControlPlane,
    processId: string,
    c: { op: 'prepare' | 'start'; message: DataFlowStartMessage },
    memo: DpsFlowMemo,
  ) => {
    // provisioning that waits for an external party is async; what needs nobody else is answered when done
    const external = planProvisioning(opts.external, memo.role, { ...(c.message.source ? { source: c.message.source } : {}), ...(c.message.destination ? { destination: c.message.destination } : {}) }).length > 0;
    const workflowId = dataFlowWorkflowIdOf({ connectorId: cp.id, processId });
    const key = PendingCallbacks.key(workflowId, c.op);
    pending.deciding(key);
    let decided = false;
    try {
      // a second start for a process is an error (DPS), but the same start message again is its sender's retry; a second prepare reaches the same flow
      const retry = c.op === 'start' && !!memo.startMessageId && (await existingMemo(cp, processId))?.startMessageId === memo.startMessageId;
      let response = await call(cp, processId, c as DataFlowCall, memo.role, { ifExists: c.op === 'start' && !retry ? 'fail' : 'use', memo: { [DPS_MEMO_KEY]: memo } });
      if (response.async && !external) {
        const settled = await waitWhile(cp, processId, settling, dps.syncWaitMs);
        if (!settling(settled) && settled.state !== 'PROVISION_REQUESTED' && settled.state !== 'FAILED') {
          // settled without anybody else's help: the same call again answers at once with the result (idempotent);
          // a flow already past it (a push done in no time) answers with where it is
          const done = { state: settled.state, async: false };
          response = settled.state === 'PROVISIONED' || settled.state === 'STARTED' ? await call(cp, processId, c as DataFlowCall, memo.role).catch(() => done) : done;
        }
      }
      const status = await statusOf(cp, processId);
      if (response.async) {
        pending.decide(key, true);
        decided = true;
        // 202 says the call went PREPARING/STARTING; where it is now (a fast provisioner may be done) the callback and the status tell
        return reply
          .code(202)
          .header('location', `${base}/dataflows/${encodeURIComponent(processId)}/status`)
          .send({ ...statusMessage(processId, status, memo.transferType), state: c.op === 'prepare' ? 'PREPARING' : 'STARTING' });
      }
      pending.decide(key, false);
      decided = true;
      const handsOut = c.op === 'prepare' ? !isPull(memo.transferType) : isPull(memo.transferType);
      return reply.code(200).send(statusMessage(processId, status, memo.transferType, handsOut ? response.dataAddress : undefined));
    } finally {
      if (!decided) pending.decide(key, false);
    }
  };

  app.post(`${base}/dataflows/prepare`, async (req, reply) => {
    const cp = await caller(req);
    const msg = parse(DataFlowPrepareWireSchema, req.body);
    const transferType = transferTypeOf(msg);
    const dataset = Object.hasOwn(dps.datasets, msg.datasetId) ? dps.datasets[msg.datasetId] : undefined;
    const destination =
      ferryAddress(msg, FERRY_METADATA.destination) ?? (msg.dataAddress ? wireAddress(msg.dataAddress, 'push') : undefined) ?? dataset?.destination;
    const memo = memoFor(cp, msg, transferType, 'CONSUMER');
    return openFlow(reply, cp, msg.processId, { op: 'prepare', message: { transferType, ...(destination ? { destination } : {}) } }, memo);
  });

  app.post(`${base}/dataflows/start`, async (req, reply) => {
    const cp = await caller(req);
    const msg = parse(DataFlowStartWireSchema, req.body);
    const transferType = transferTypeOf(msg);
    const pull = isPull(transferType);
    if (pull && msg.dataAddress) throw new DpsHttpError(400, 'a pull is started without a dataAddress: the provider data plane issues it');
    const dataset = Object.hasOwn(dps.datasets, msg.datasetId) ? dps.datasets[msg.datasetId] : undefined;
    const source = ferryAddress(msg, FERRY_METADATA.source) ?? dataset?.source;
    if (!source) throw new DpsHttpError(400, `dataset ${msg.datasetId} is not known to data plane ${config.instanceId}`);
    const destination = msg.dataAddress ? wireAddress(msg.dataAddress, 'push') : dataset?.destination;
    if (!pull && !destination) throw new DpsHttpError(400, 'a push needs a dataAddress to push to');
    const memo = memoFor(cp, msg, transferType, 'PROVIDER');
    return openFlow(
      reply,
      cp,
      msg.processId,
      { op: 'start', message: { transferType, source, ...(destination ? { destination } : {}), ...(pull && msg.counterPartyId ? { audience: msg.counterPartyId } : {}) } },
      memo,
    );
  });

  app.post<{ Params: { id: string } }>(`${base}/dataflows/:id/started`, async (req, reply) => {
    const cp = await caller(req);
    const msg = parse(DataFlowStartedWireSchema, req.body);
    const memo = await memoOf(cp, req.params.id);
    if (memo.role !== 'CONSUMER') throw new DpsHttpError(409, 'started is a notification for a consumer data flow');
    let source: DataAddress | undefined;
    if (msg.dataAddress) {
      if (!isPull(memo.transferType)) throw new DpsHttpError(400, 'a push is started without a dataAddress');
      assertRenewable(msg.dataAddress, memo.transferType);
      source = wireAddress(msg.dataAddress, 'pull');
    }
    await call(cp, req.params.id, { op: 'start', message: { transferType: memo.transferType, ...(source ? { source } : {}) } }, 'CONSUMER');
    const status = await waitWhile(cp, req.params.id, settling, dps.syncWaitMs);
    return reply.code(200).send(statusMessage(req.params.id, status, memo.transferType));
  });

  app.post<{ Params: { id: string } }>(`${base}/dataflows/:id/suspend`, async (req, reply) => {
    const cp = await caller(req);
    const msg = parse(DataFlowReasonWireSchema, req.body);
    const memo = await memoOf(cp, req.params.id);
    await call(cp, req.params.id, { op: 'suspend', message: msg.reason ? { reason: msg.reason } : {} }, memo.role);
    return reply.code(200).send(statusMessage(req.params.id, await statusOf(cp, req.params.id), memo.transferType));
  });

  app.post<{ Params: { id: string } }>(`${base}/dataflows/:id/resume`, async (req, reply) => {
    const cp = await caller(req);
    const msg = parse(DataFlowResumeWireSchema, req.body);
    const memo = await memoOf(cp, req.params.id);
    const pull = isPull(memo.transferType);
    const address = msg.dataAddress ? wireAddress(msg.dataAddress, pull ? 'pull' : 'push') : undefined;
    if (address && pull && memo.role === 'PROVIDER') throw new DpsHttpError(400, 'a pull is resumed without a dataAddress: the provider data plane issues it');
    // a suspension still releasing what it held: resume once that is done
    await waitWhile(cp, req.params.id, releasing, Math.max(dps.syncWaitMs, 10_000));
    const message = {
      transferType: memo.transferType,
      ...(address ? (memo.role === 'CONSUMER' ? { source: address } : { destination: address }) : {}),
      ...(pull && memo.role === 'PROVIDER' && memo.counterPartyId ? { audience: memo.counterPartyId } : {}),
    };
    let response = await call(cp, req.params.id, { op: 'resume', message }, memo.role);
    if (response.async) {
      await waitWhile(cp, req.params.id, settling, dps.syncWaitMs);
      response = await call(cp, req.params.id, { op: 'resume', message }, memo.role).catch(() => response);
    }
    const handsOut = pull && memo.role === 'PROVIDER';
    return reply.code(200).send(statusMessage(req.params.id, await statusOf(cp, req.params.id), memo.transferType, handsOut ? response.dataAddress : undefined));
  });

  app.post<{ Params: { id: string } }>(`${base}/dataflows/:id/terminate`, async (req, reply) => {
    const cp = await caller(req);
    const msg = parse(DataFlowReasonWireSchema, req.body);
    const memo = await memoOf(cp, req.params.id);
    await call(cp, req.params.id, { op: 'terminate', message: msg.reason ? { reason: msg.reason } : {} }, memo.role);
    return reply.code(200).send(statusMessage(req.params.id, await statusOf(cp, req.params.id), memo.transferType));
  });

  app.post<{ Params: { id: string } }>(`${base}/dataflows/:id/completed`, async (req, reply) => {
    const cp = await caller(req);
    const memo = await memoOf(cp, req.params.id);
    await call(cp, req.params.id, { op: 'complete' }, memo.role);
    return reply.code(200).send(statusMessage(req.params.id, await statusOf(cp, req.params.id), memo.transferType));
  });

  app.get<{ Params: { id: string } }>(`${base}/dataflows/:id/status`, async (req) => {
    const cp = await caller(req);
    const status = await statusOf(cp, req.params.id);
    return { dataFlowId: req.params.id, state: dpsStateOf(status) };
  });

  app.put(`${base}/controlplanes`, async (req, reply) => {
    admin(req);
    const msg = parse(ControlPlaneRegistrationSchema, req.body);
    controlPlanes.register(msg);
    return reply.code(200).send();
  });
  app.delete<{ Params: { id: string } }>(`${base}/controlplanes/:id`, async (req, reply) => {
    admin(req);
    if (!controlPlanes.remove(req.params.id)) throw new DpsHttpError(404, `no registered control plane ${req.params.id}`);
    return reply.code(204).send();
  });

  dpsErrorHandlers(app);

  const url = await app.listen({ host: dps.host, port: dps.port });
  return { url: dps.publicUrl ?? `${url}${base}`, close: () => app.close() };
}

function memoFor(cp: DpsControlPlane, msg: DataFlowFlowWire, transferType: TransferType, role: DpsFlowMemo['role']): DpsFlowMemo {
  return {
    controlPlaneId: cp.id,
    transferType,
    profile: msg.profile ?? profileOfTransferType(transferType),
    role,
    ...(msg.participantId ? { participantId: msg.participantId } : {}),
    ...(msg.counterPartyId ? { counterPartyId: msg.counterPartyId } : {}),
    ...(role === 'PROVIDER' && msg.messageId ? { startMessageId: msg.messageId } : {}),
  };
}

/**
 * The HTTP profile's pulls renew their token (Token Renewal profile): a consumer takes an http-pull
 * address only with `refreshToken`, `expiresIn` and `refreshEndpoint`, so a long pull never runs dry.
 */
function assertRenewable(address: DpsDataAddress, transferType: string): void {
  const fromDps = address.endpointType === 'https://w3id.org/dspace-sig/profile/http-pull';
  if (!fromDps || transferType !== 'HttpData-PULL') return;
  const missing = ['authorization', 'refreshToken', 'expiresIn', 'refreshEndpoint'].filter((n) => !address.endpointProperties.some((p) => p.name === n && p.value));
  if (missing.length) throw new DpsHttpError(400, `an http-pull dataAddress needs the Token Renewal properties: missing ${missing.join(', ')}`);
  const expiresIn = address.endpointProperties.find((p) => p.name === 'expiresIn')!.value;
  if (!/^\d+$/.test(expiresIn)) throw new DpsHttpError(400, 'expiresIn must be a number of seconds');
}
