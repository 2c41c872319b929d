import { createHash, timingSafeEqual } from 'node:crypto';
import rateLimit from '@fastify/rate-limit';
import { isGrpcServiceError, WorkflowNotFoundError, WorkflowUpdateFailedError, type Client, type WorkflowHandle } from '@temporalio/client';
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import { z } from 'zod';
import { admitTransferRequest } from '../src/admission.js';
import type { ControlPlaneConfig, Counterparty, DspConfig } from '../src/config.js';
import type { DataAddress } from '../src/DataAddress.js';
import {
  DSP_CONTEXT,
  dspStateOf,
  FINAL_STATE_OF,
  MESSAGE_ID_HEADER,
  MESSAGE_PATHS,
  trimSlash,
  type DspTransferError,
  type DspTransferProcess,
  type MessagePath,
  type ProcessMessageType,
} from '../src/dsp.js';
import { ProcessMessageSchema, TransferRequestMessageSchema } from '../src/schemas/dsp.js';
import { counterpartyOwning, depthOf, isUnder } from '../src/urlPolicy.js';
import { transferProcessWorkflowId } from '../src/ids.js';
import { IdSchema } from '../src/schemas/ids.js';
import { LIMITS } from '../src/limits.js';
import { providerPidFor, startTransferProcess, type ProcessMemo } from '../src/processStart.js';
import { durationMs } from '../src/settings.js';
import { counterpartyMessageUpdate, transferProcessStatusQuery, type TransferProcessStatus } from '../src/TransferProcess.js';
import { parseHttpUrl, UrlPolicyError } from '../src/urlPolicy.js';

/**
 * The Dataspace Protocol HTTPS binding, inbound (transfer process part). Every message becomes a
 * Temporal update on the TransferProcess, so its validator decides at once: accepted → 200,
 * refused → 400 TransferError with the state unchanged. Unknown processes and unknown or
 * unauthenticated callers both get 404, as the binding requires.
 *
 * At the boundary, in this order: the caller is authenticated from its bearer token before its body
 * is read; it is rate-limited and its requests in progress are bounded (429 with Retry-After, per
 * counterparty; unauthenticated callers per IP); the body is bounded (413) and validated (400); a
 * request is admitted (src/admission.ts) before any workflow starts; and a process is touched only by
 * the counterparty it was created for (its id, bound at creation, never an address prefix).
 */
export interface DspServer {
  url: string;
  /** Requests of a counterparty in progress now (the concurrency limit counts these). */
  inFlight(counterpartyId: string): number;
  close(): Promise<void>;
}

class DspError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly pids: { consumerPid?: string; providerPid?: string } = {},
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
  }
}

export { dspStateOf };


/** Percent-encoded pid of the longest length, with room for the rest of the path. */
const MAX_PARAM_LENGTH = 3 * LIMITS.pid + 64;
/** How many process → counterparty bindings the server remembers (they never change). */
const BINDING_CACHE_SIZE = 10_000;

declare module 'fastify' {
  interface FastifyRequest {
    counterparty?: Counterparty;
    holdsSlot?: boolean;
  }
  interface FastifyContextConfig {
    /** Served without authentication (the version document). */
    public?: boolean;
  }
}

export async function startDspServer(opts: { config: ControlPlaneConfig & { dsp: DspConfig }; client: Client }): Promise<DspServer> {
  const { config, client } = opts;
  const { dsp, connectorId } = config;
  const limits = dsp.limits;
  const handlerTimeoutMs = durationMs(limits.requestTimeout);
  const app = Fastify({
    bodyLimit: limits.bodyBytes,
    maxParamLength: MAX_PARAM_LENGTH,
    logger: false,
    // receiving a request (headers and body) is bounded; handlers are bounded by handlerTimeoutMs
    requestTimeout: Math.max(handlerTimeoutMs, 30_000),
    connectionTimeout: 120_000,
  });
  // Routes live under the path of our public URL (`https://connector.example/dsp` serves `/dsp/transfers/…`).
  const base = dsp.publicUrl ? trimSlash(new URL(dsp.publicUrl).pathname) : '';
  const tokens = dsp.counterparties.map((c) => ({ c, token: Buffer.from(c.inboundToken) }));

  /** The counterparty presenting this bearer token, compared in constant time (every token is compared). */
  const identify = (header: string | undefined): Counterparty | undefined => {
    const token = /^Bearer (\S{1,4096})$/.exec(header ?? '')?.[1];
    if (!token) return undefined;
    const given = Buffer.from(token);
    let found: Counterparty | undefined;
    for (const { c, token: expected } of tokens) {
      if (expected.length === given.length && timingSafeEqual(expected, given)) found = c;
    }
    return found;
  };

  // 1. Who is calling, from the Authorization header alone (nothing of the body is read yet).
  app.addHook('onRequest', async (req) => {
    const who = identify(req.headers.authorization);
    if (who) req.counterparty = who;
  });
  // 2. Per-counterparty rate limit (route-level onRequest hooks run after the one above).
  await app.register(rateLimit, {
    global: true,
    hook: 'onRequest',
    max: limits.maxRequests,
    timeWindow: durationMs(limits.window),
    keyGenerator: (req) => (req.counterparty ? `counterparty:${req.counterparty.id}` : `ip:${req.ip}`),
    errorResponseBuilder: (_req, ctx) => Object.assign(new DspError(429, 'TooManyRequests', `rate limit of ${ctx.max} requests exceeded; retry in ${ctx.after}`), { statusCode: 429 }),
  });
  // 3. Before the body is parsed: unauthenticated callers are refused, and requests in progress bounded.
  const inFlight = new Map<string, number>();
  const release = (req: FastifyRequest) => {
    if (!req.holdsSlot || !req.counterparty) return;
    req.holdsSlot = false;
    const n = (inFlight.get(req.counterparty.id) ?? 1) - 1;
    if (n <= 0) inFlight.delete(req.counterparty.id);
    else inFlight.set(req.counterparty.id, n);
  };
  app.addHook('preParsing', async (req) => {
    if (req.routeOptions.config.public) return;
    const who = req.counterparty;
    if (!who) throw new DspError(404, 'NotFound', 'not found'); // an unknown caller learns nothing
    const n = inFlight.get(who.id) ?? 0;
    if (n >= limits.concurrency) throw new DspError(429, 'TooManyRequests', `at most ${limits.concurrency} requests in progress`, {}, 1);
    inFlight.set(who.id, n + 1);
    req.holdsSlot = true;
  });
  app.addHook('onResponse', async (req) => release(req));
  app.addHook('onRequestAbort', async (req) => release(req));

  /** Temporal calls of one request share its deadline; Temporal being unreachable or slow is 503. */
  const temporal = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await client.withDeadline(Date.now() + handlerTimeoutMs, fn);
    } catch (e) {
      if (isGrpcServiceError(e) || isGrpcServiceError((e as { cause?: unknown })?.cause)) {
        throw new DspError(503, 'Unavailable', 'the connector cannot answer now; retry later', {}, 5);
      }
      throw e;
    }
  };

  /**
   * Who may touch process `pid`: the counterparty bound to it. A provider process carries the id of
   * the counterparty that created it (memo, input); a consumer process belongs to the configured
   * counterparty that owns its counterparty address (the one our messages go to, with its token).
   * Bindings never change, so they are cached; unknown processes are not.
   */
  const bindings = new Map<string, string | null>();
  const boundCounterparty = async (pid: string, handle: WorkflowHandle): Promise<string | null> => {
    const cached = bindings.get(pid);
    if (cached !== undefined) return cached;
    const described = await temporal(() => handle.describe()).catch((e: unknown) => {
      if (e instanceof WorkflowNotFoundError) return undefined;
      throw e;
    });
    if (!described) throw new DspError(404, 'NotFound', 'not found');
    const memo = (described.memo ?? {}) as ProcessMemo;
    let bound: string | null;
    if (typeof memo.counterpartyId === 'string') bound = memo.counterpartyId;
    else {
      const status = await temporal(() => handle.query(transferProcessStatusQuery));
      const withId = status as TransferProcessStatus & { counterpartyId?: string };
      bound = (status.role === 'PROVIDER' ? withId.counterpartyId : undefined) ?? counterpartyOwning(dsp.counterparties, status.counterpartyAddress)?.id ?? null;
    }
    if (bindings.size >= BINDING_CACHE_SIZE) bindings.delete(bindings.keys().next().value!);
    bindings.set(pid, bound);
    return bound;
  };

  /** A process of ours bound to the caller; anything else (unknown, someone else's, not a pid of ours) is "not found". */
  const processFor = async (pid: string, who: Counterparty) => {
    if (!IdSchema.safeParse(pid).success) throw new DspError(404, 'NotFound', 'not found');
    const handle = client.workflow.getHandle(transferProcessWorkflowId(connectorId, pid));
    if ((await boundCounterparty(pid, handle)) !== who.id) throw new DspError(404, 'NotFound', 'not found');
    return handle;
  };
  const statusOf = (handle: WorkflowHandle) =>
    temporal(() => handle.query(transferProcessStatusQuery)).catch((e: unknown) => {
      if (e instanceof WorkflowNotFoundError) throw new DspError(404, 'NotFound', 'not found');
      throw e;
    });

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

  /** A digest of what makes a request this request: a re-sent one must match it (the memo holding it is encrypted like every payload). */
  const requestDigest = (r: { agreementId: string; format: string; dataAddress?: DataAddress | undefined; callbackAddress: string }): string => {
    const address = r.dataAddress && {
      endpointType: r.dataAddress.endpointType,
      endpoint: r.dataAddress.endpoint,
      properties: [...r.dataAddress.endpointProperties].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)).map((p) => [p.name, p.value]),
    };
    return createHash('sha256').update(JSON.stringify([r.agreementId, r.format, address ?? null, r.callbackAddress])).digest('base64url');
  };

  // at the host root, as .well-known paths are; it names where the protocol lives
  app.get('/.well-known/dspace-version', { config: { public: true } }, async () => ({
    protocolVersions: [{ version: '2025-1', path: base || '/', binding: 'HTTPS' }],
  }));

  app.post(`${base}/transfers/request`, async (req, reply) => {
    const who = req.counterparty!;
    const msg = parse(TransferRequestMessageSchema, req.body);
    const pids = { consumerPid: msg.consumerPid };
    // Everything is checked before any workflow starts.
    const callbackAddress = callbackOf(msg.callbackAddress, who, dsp.counterparties, pids);
    const admission = admitTransferRequest(config, {
      counterpartyId: who.id,
      agreementId: msg.agreementId,
      assetId: msg.assetId,
      format: msg.format,
      dataAddress: msg.dataAddress,
    });
    if (!admission.admitted) throw new DspError(400, admission.code, admission.reason, pids);
    const providerPid = providerPidFor(who.id, msg.consumerPid);
    const digest = requestDigest({ ...msg, callbackAddress });
    const handle = client.workflow.getHandle(transferProcessWorkflowId(connectorId, providerPid));
    const conflict = () => new DspError(409, 'Conflict', `consumerPid ${msg.consumerPid} was requested before with other parameters`, { ...pids, providerPid });

    const existing = await temporal(() => handle.describe()).catch((e: unknown) => {
      if (e instanceof WorkflowNotFoundError) return undefined;
      throw e;
    });
    if (existing) {
      // A re-sent request: the same parameters get the process as it stands, others a conflict.
      const memo = (existing.memo ?? {}) as ProcessMemo;
      if (memo.requestDigest !== undefined && memo.requestDigest !== digest) throw conflict();
      return reply.code(201).send(ack(await statusOf(handle)));
    }
    await temporal(() =>
      startTransferProcess(
        client,
        {
          role: 'PROVIDER',
          connectorId,
          processId: providerPid,
          counterpartyPid: msg.consumerPid,
          counterpartyAddress: callbackAddress,
          counterpartyId: who.id,
          agreementId: msg.agreementId,
          assetId: admission.assetId,
          transferType: admission.transferType,
          ...(msg.dataAddress ? { dataDestination: msg.dataAddress } : {}),
          ...(admission.startPolicy === 'manual' ? { startPolicy: 'manual' as const } : {}),
        },
        { memo: { counterpartyId: who.id, requestDigest: digest } },
      ),
    );
    // Two different requests racing for one consumerPid: the one that started the process wins.
    const started = await temporal(() => handle.describe());
    if (((started.memo ?? {}) as ProcessMemo).requestDigest !== digest) throw conflict();
    return reply.code(201).send({ '@context': [DSP_CONTEXT], '@type': 'TransferProcess', providerPid, consumerPid: msg.consumerPid, state: 'REQUESTED' } satisfies DspTransferProcess);
  });

  app.post<{ Params: { pid: string; kind: string } }>(`${base}/transfers/:pid/:kind`, async (req, reply) => {
    const who = req.counterparty!;
    const expected = MESSAGE_PATHS[req.params.kind as MessagePath] as ProcessMessageType | undefined;
    if (!expected || !Object.hasOwn(MESSAGE_PATHS, req.params.kind)) throw new DspError(404, 'NotFound', 'not found');
    const msg = parse(ProcessMessageSchema, req.body);
    const pids = { consumerPid: msg.consumerPid, providerPid: msg.providerPid };
    if (msg['@type'] !== expected) throw new DspError(400, 'InvalidMessage', `${req.params.kind} takes a ${expected}, not a ${msg['@type']}`, pids);
    const handle = await processFor(req.params.pid, who);
    // a ferry counterparty names each message: a repeat of one already taken is answered as done
    const messageId = req.headers[MESSAGE_ID_HEADER];
    const updateId = typeof messageId === 'string' && /^[\x21-\x7e]{1,300}$/.test(messageId) ? `${who.id}:${messageId}` : undefined;
    try {
      await temporal(() => handle.executeUpdate(counterpartyMessageUpdate, { args: [msg], ...(updateId ? { updateId } : {}) }));
    } catch (e) {
      const refused = e instanceof WorkflowUpdateFailedError;
      const ended = e instanceof Error && /already completed|not found/i.test(e.message);
      if (!refused && !ended) throw e;
      // A repeat of a message whose effect already happened (the process ended where it leads) is done.
      const status = await statusOf(handle);
      if (FINAL_STATE_OF[msg['@type']] !== undefined && FINAL_STATE_OF[msg['@type']] === status.state) return reply.code(200).send();
      // The validator refused (or the process has ended): the state is unchanged.
      throw new DspError(400, 'InvalidStateTransition', refused ? (e.cause?.message ?? e.message) : 'the transfer process has ended', pids);
    }
    return reply.code(200).send();
  });

  app.get<{ Params: { pid: string } }>(`${base}/transfers/:pid`, async (req) => {
    const handle = await processFor(req.params.pid, req.counterparty!);
    return ack(await statusOf(handle));
  });

  app.setErrorHandler((err: Error & { statusCode?: number }, _req: FastifyRequest, reply: FastifyReply) => {
    if (err instanceof DspError) {
      if (err.retryAfterSeconds) reply.header('retry-after', String(err.retryAfterSeconds));
      return reply.code(err.status).send(transferError(err.code, err.message, err.pids));
    }
    // Fastify's own 4xx (malformed JSON, body too large, media type) keep their status, in the binding's shape.
    if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) return reply.code(err.statusCode).send(transferError('InvalidMessage', err.message));
    reply.log.error(err);
    return reply.code(500).send(transferError('InternalError', 'internal error'));
  });
  app.setNotFoundHandler((_req, reply) => reply.code(404).send(transferError('NotFound', 'not found')));

  const address = await app.listen({ host: dsp.host, port: dsp.port });
  return { url: address, inFlight: (id) => inFlight.get(id) ?? 0, close: () => app.close() };
}

/**
 * The callback address a requesting counterparty gave, checked: an http(s) URL without credentials,
 * query or fragment, under the caller's configured address, and not under a more specific address
 * of another counterparty (a callback into someone else's endpoint). Returned normalised.
 */
function callbackOf(raw: string, who: Counterparty, all: readonly Counterparty[], pids: { consumerPid?: string }): string {
  const refuse = (why: string) => new DspError(400, 'InvalidCallbackAddress', why, pids);
  let url: URL;
  try {
    parseHttpUrl(raw, 'callbackAddress');
    url = new URL(raw);
  } catch (e) {
    throw refuse(e instanceof UrlPolicyError ? e.message : 'callbackAddress is not a valid URL');
  }
  if (url.search || url.hash) throw refuse('callbackAddress must have no query or fragment');
  if (!isUnder(raw, who.address)) throw refuse(`callbackAddress must lie under ${who.address}`);
  // another counterparty's more specific address: a callback into someone else's endpoint (two with
  // the same address, as one test suite playing both roles, leave it the caller's)
  const owner = counterpartyOwning(all, raw);
  if (owner && owner.id !== who.id && depthOf(owner.address) > depthOf(who.address)) throw refuse(`callbackAddress lies under ${owner.address}, another counterparty's`);
  return trimSlash(url.href);
}

function transferError(code: string, message: string, pids: { consumerPid?: string; providerPid?: string } = {}): DspTransferError {
  return { '@context': [DSP_CONTEXT], '@type': 'TransferError', ...pids, code, reason: [message] };
}
