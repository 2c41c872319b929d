import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { dpsErrorHandlers, DpsHttpError, requireAdmin } from './dpsHttp.js';
import { z } from 'zod';
import type { DpsAuth } from '../activities/dps/auth.js';
import type { DataPlaneDirectory } from '../activities/dps/dataPlaneClient.js';
import type { DpsSignalingConfig } from '../src/config.js';
import { DataPlaneRegistrationSchema, DataFlowStatusWireSchema, DpsMessageError, fromWireAddress } from '../src/dps.js';
import { trimSlash } from '../src/dsp.js';
import { transferProcessWorkflowId } from '../src/ids.js';
import { dataPlaneCallbackSignal, isPull, transferProcessStatusQuery, type DataPlaneCallback } from '../src/TransferProcess.js';

/**
 * The control plane's DPS signaling endpoint: DPS data planes call back here
 * (`POST /transfers/{processId}/dataflow/prepared|started|completed|errored`) and register
 * (`PUT /dataplanes`, `DELETE /dataplanes/{id}`). A callback becomes the same `dataPlaneCallback`
 * signal the in-cluster data planes send, so the TransferProcess cannot tell them apart. Only the
 * data plane of the process may call back for it; anyone else gets 401 (no credentials) or 404.
 * `errored` changes no state: it is recorded in the worker's log for an operator to act on.
 */
export interface DpsControlPlaneApi {
  url: string;
  /** Test-only routes (the DPS TCK's trigger webhook) are added before the server listens. */
  app: FastifyInstance;
  close(): Promise<void>;
}

const KINDS = ['prepared', 'started', 'completed', 'errored'] as const;

export async function startDpsControlPlaneApi(opts: {
  signaling: DpsSignalingConfig;
  connectorId: string;
  client: Client;
  auth: DpsAuth;
  planes: DataPlaneDirectory;
  /** Adds routes before the server listens (test harnesses). */
  extend?: (app: FastifyInstance) => void;
}): Promise<DpsControlPlaneApi> {
  const { signaling, client, auth, planes } = opts;
  const app = Fastify({ bodyLimit: 1024 * 1024, logger: false });
  const base = signaling.publicUrl ? trimSlash(new URL(signaling.publicUrl).pathname) : '';

  const admin = (req: FastifyRequest): void => requireAdmin(req, signaling.adminToken);

  app.post<{ Params: { id: string; kind: string } }>(`${base}/transfers/:id/dataflow/:kind`, async (req, reply) => {
    const kind = req.params.kind as (typeof KINDS)[number];
    if (!KINDS.includes(kind)) throw new DpsHttpError(404, 'not found');
    const caller = await auth.identify(req.headers.authorization, planes.dpsPeers());
    // the process, and the data plane that serves it: only that one may call back for it
    const handle = client.workflow.getHandle(transferProcessWorkflowId(opts.connectorId, req.params.id));
    let status;
    try {
      status = await handle.query(transferProcessStatusQuery);
    } catch (e) {
      if (e instanceof WorkflowNotFoundError) throw new DpsHttpError(caller ? 404 : 401, caller ? 'not found' : 'unknown caller');
      throw e;
    }
    const plane = status.dataPlane ? planes.dps(status.dataPlane.id) : undefined;
    if (!plane) throw new DpsHttpError(caller ? 404 : 401, caller ? 'not found' : 'unknown caller');
    if (caller ? caller.id !== plane.id : !plane.acceptUnauthenticated) throw new DpsHttpError(caller ? 404 : 401, caller ? 'not found' : 'unknown caller');
    const parsed = DataFlowStatusWireSchema.safeParse(req.body ?? {});
    if (!parsed.success) throw new DpsHttpError(400, z.prettifyError(parsed.error));
    const msg = parsed.data;
    if (kind === 'errored') {
      console.warn(`DPS data plane ${plane.id} reports an error for process ${req.params.id}: ${msg.error ?? 'no detail'} (state ${msg.state})`);
      return reply.code(200).send();
    }
    const pull = isPull(status.transferType);
    const op: DataPlaneCallback['op'] = kind === 'prepared' ? 'prepare' : kind === 'started' ? 'start' : 'transfer';
    let dataAddress;
    if (msg.dataAddress && (kind === 'prepared' || kind === 'started')) {
      try {
        dataAddress = fromWireAddress(msg.dataAddress, pull ? 'pull' : 'push');
      } catch (e) {
        if (e instanceof DpsMessageError) throw new DpsHttpError(400, e.message);
        throw e;
      }
    }
    const failed = msg.state === 'TERMINATED';
    try {
      await handle.signal(dataPlaneCallbackSignal, {
        flowId: req.params.id,
        op,
        ok: !failed,
        ...(dataAddress ? { dataAddress } : {}),
        ...(failed ? { error: msg.error ?? `data plane ${plane.id} terminated the flow` } : {}),
      });
    } catch (e) {
      if (e instanceof WorkflowNotFoundError || (e instanceof Error && /already completed/i.test(e.message))) throw new DpsHttpError(409, 'the transfer process has ended');
      throw e;
    }
    return reply.code(200).send();
  });

  app.put(`${base}/dataplanes`, async (req, reply) => {
    admin(req);
    const parsed = DataPlaneRegistrationSchema.safeParse(req.body ?? {});
    if (!parsed.success) throw new DpsHttpError(400, z.prettifyError(parsed.error));
    try {
      planes.register(parsed.data);
    } catch (e) {
      throw new DpsHttpError(400, (e as Error).message);
    }
    return reply.code(200).send();
  });
  app.delete<{ Params: { id: string } }>(`${base}/dataplanes/:id`, async (req, reply) => {
    admin(req);
    if (!planes.remove(req.params.id)) throw new DpsHttpError(404, `no registered data plane ${req.params.id}`);
    return reply.code(204).send();
  });

  opts.extend?.(app);
  dpsErrorHandlers(app);

  const url = await app.listen({ host: signaling.host, port: signaling.port });
  return { url: signaling.publicUrl ?? `${url}${base}`, app, close: () => app.close() };
}
