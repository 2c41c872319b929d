import { timingSafeEqual } from 'node:crypto';
import { WorkflowNotFoundError, WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { ControlPlaneConfig, Counterparty, DspConfig } from '../src/config.js';
import {
  DSP_CONTEXT,
  dspStateOf,
  FINAL_STATE_OF,
  isUnder,
  MESSAGE_ID_HEADER,
  trimSlash,
  MESSAGE_PATHS,
  ProcessMessageSchema,
  TransferRequestMessageSchema,
  type DspState,
  type DspTransferError,
  type DspTransferProcess,
  type MessagePath,
} from '../src/dsp.js';
import { transferProcessWorkflowId } from '../src/ids.js';
import { providerPidFor, startTransferProcess } from '../src/processStart.js';
import {
  counterpartyMessageUpdate,
  transferProcessStatusQuery,
  TransferTypeSchema,
  type TransferProcessStatus,
} from '../src/TransferProcess.js';

/**
 * The Dataspace Protocol HTTPS binding, inbound (transfer process part). Every message becomes a
 * Temporal update on the TransferProcess, so its validator decides at once: accepted → 200,
 * refused → 400 TransferError with the state unchanged. Unknown processes and unknown or
 * unauthenticated callers both get 404, as the binding requires.
 */
export interface DspServer {
  url: string;
  close(): Promise<void>;
}

class DspError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly pids: { consumerPid?: string; providerPid?: string } = {},
  ) {
    super(message);
  }
}

export { dspStateOf };


export async function startDspServer(opts: { config: ControlPlaneConfig & { dsp: DspConfig }; client: Client }): Promise<DspServer> {
  const { config, client } = opts;
  const { dsp, connectorId } = config;
  const app = Fastify({ bodyLimit: 1024 * 1024, logger: false });
  // Routes live under the path of our public URL (`https://connector.example/dsp` serves `/dsp/transfers/…`).
  const base = dsp.publicUrl ? trimSlash(new URL(dsp.publicUrl).pathname) : '';

  /** The counterparty presenting this bearer token, compared in constant time. */
  const caller = (req: FastifyRequest): Counterparty => {
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    const given = Buffer.from(token ?? '');
    const found = token
      ? dsp.counterparties.find((c) => {
          const expected = Buffer.from(c.inboundToken);
          return expected.length === given.length && timingSafeEqual(expected, given);
        })
      : undefined;
    if (!found) throw new DspError(404, 'NotFound', 'not found'); // an unknown caller learns nothing
    return found;
  };

  /** A process of ours whose counterparty is the caller; anything else is "not found". */
  const processFor = async (pid: string, who: Counterparty) => {
    const handle = client.workflow.getHandle(transferProcessWorkflowId(connectorId, pid));
    let status: TransferProcessStatus;
    try {
      status = await handle.query(transferProcessStatusQuery);
    } catch (e) {
      if (e instanceof WorkflowNotFoundError) throw new DspError(404, 'NotFound', 'not found');
      throw e;
    }
    if (!isUnder(status.counterpartyAddress, who.address)) throw new DspError(404, 'NotFound', 'not found');
    return { handle, status };
  };

  const ack = (status: TransferProcessStatus): DspTransferProcess => {
    const pids =
      status.role === 'PROVIDER'
        ? { providerPid: status.processId, consumerPid: status.counterpartyPid ?? '' }
        : { consumerPid: status.processId, providerPid: status.counterpartyPid ?? '' };
    return { '@context': [DSP_CONTEXT], '@type': 'TransferProcess', ...pids, state: dspStateOf(status) };
  };

  const parse = <T extends z.ZodType>(schema: T, body: unknown): z.infer<T> => {
    const result = schema.safeParse(body);
    if (!result.success) throw new DspError(400, 'InvalidMessage', z.prettifyError(result.error));
    const context = (result.data as { '@context': string[] })['@context'];
    if (!context.includes(DSP_CONTEXT)) throw new DspError(400, 'InvalidMessage', `@context must include ${DSP_CONTEXT}`);
    return result.data;
  };

  // at the host root, as .well-known paths are; it names where the protocol lives
  app.get('/.well-known/dspace-version', async () => ({
    protocolVersions: [{ version: '2025-1', path: base || '/', binding: 'HTTPS' }],
  }));

  app.post(`${base}/transfers/request`, async (req, reply) => {
    const who = caller(req);
    const msg = parse(TransferRequestMessageSchema, req.body);
    const pids = { consumerPid: msg.consumerPid };
    // Everything is checked before any workflow starts.
    const agreement = dsp.agreements[msg.agreementId];
    if (!agreement || agreement.counterparty !== who.id) {
      throw new DspError(400, 'UnknownAgreement', `no agreement ${msg.agreementId} with ${who.id}`, pids);
    }
    const format = TransferTypeSchema.safeParse(msg.format);
    if (!format.success) throw new DspError(400, 'UnsupportedFormat', `format ${msg.format} is not supported`, pids);
    if (!isUnder(msg.callbackAddress, who.address)) {
      throw new DspError(400, 'InvalidCallbackAddress', `callbackAddress must lie under ${who.address}`, pids);
    }
    const providerPid = providerPidFor(who.id, msg.consumerPid);
    await startTransferProcess(client, {
      role: 'PROVIDER',
      connectorId,
      processId: providerPid,
      counterpartyPid: msg.consumerPid,
      counterpartyAddress: trimSlash(msg.callbackAddress),
      agreementId: msg.agreementId,
      assetId: agreement.assetId,
      transferType: format.data,
      ...(msg.dataAddress ? { dataDestination: msg.dataAddress } : {}),
      ...(agreement.start === 'manual' ? { startPolicy: 'manual' as const } : {}),
    });
    return reply.code(201).send({ '@context': [DSP_CONTEXT], '@type': 'TransferProcess', providerPid, consumerPid: msg.consumerPid, state: 'REQUESTED' } satisfies DspTransferProcess);
  });

  app.post<{ Params: { pid: string; kind: string } }>(`${base}/transfers/:pid/:kind`, async (req, reply) => {
    const who = caller(req);
    const expected = MESSAGE_PATHS[req.params.kind as MessagePath] as string | undefined;
    if (!expected) throw new DspError(404, 'NotFound', 'not found');
    const msg = parse(ProcessMessageSchema, req.body);
    const pids = { consumerPid: msg.consumerPid, providerPid: msg.providerPid };
    if (msg['@type'] !== expected) throw new DspError(400, 'InvalidMessage', `${req.params.kind} takes a ${expected}, not a ${msg['@type']}`, pids);
    const { handle, status } = await processFor(req.params.pid, who);
    // a ferry counterparty names each message: a repeat of one already taken is answered as done
    const messageId = req.headers[MESSAGE_ID_HEADER];
    const updateId = typeof messageId === 'string' && /^[\x21-\x7e]{1,300}$/.test(messageId) ? `${who.id}:${messageId}` : undefined;
    try {
      await handle.executeUpdate(counterpartyMessageUpdate, { args: [msg], ...(updateId ? { updateId } : {}) });
    } catch (e) {
      // The validator refused (or the process has ended): the state is unchanged.
      if (e instanceof WorkflowUpdateFailedError) throw new DspError(400, 'InvalidStateTransition', e.cause?.message ?? e.message, pids);
      if (e instanceof Error && /already completed|not found/i.test(e.message)) {
        // ended: a message that would have ended it the same way is a repeat, and done
        const ended = await handle.query(transferProcessStatusQuery).catch(() => status);
        if (FINAL_STATE_OF[msg['@type']] === dspStateOf(ended)) return reply.code(200).send();
        throw new DspError(400, 'InvalidStateTransition', 'the transfer process has ended', pids);
      }
      throw e;
    }
    return reply.code(200).send();
  });

  app.get<{ Params: { pid: string } }>(`${base}/transfers/:pid`, async (req) => {
    const who = caller(req);
    return ack((await processFor(req.params.pid, who)).status);
  });

  app.setErrorHandler((err: Error & { statusCode?: number }, _req: FastifyRequest, reply: FastifyReply) => {
    if (err instanceof DspError) return reply.code(err.status).send(transferError(err.code, err.message, err.pids));
    // Fastify's own 4xx (malformed JSON, body too large) keep their status, in the binding's shape.
    if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) return reply.code(err.statusCode).send(transferError('InvalidMessage', err.message));
    reply.log.error(err);
    return reply.code(500).send(transferError('InternalError', 'internal error'));
  });
  app.setNotFoundHandler((_req, reply) => reply.code(404).send(transferError('NotFound', 'not found')));

  const address = await app.listen({ host: dsp.host, port: dsp.port });
  return { url: address, close: () => app.close() };
}

function transferError(code: string, message: string, pids: { consumerPid?: string; providerPid?: string } = {}): DspTransferError {
  return { '@context': [DSP_CONTEXT], '@type': 'TransferError', ...pids, code, reason: [message] };
}
