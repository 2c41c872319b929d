import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { Payload, PayloadCodec } from '@temporalio/common';
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import { z } from 'zod';
import { EncryptionCodec } from '../src/codec.js';
import { ConfigError } from '../src/config.js';
import { KEY_VARIABLES, requireKeyring } from '../src/keys.js';
import { isMain, runMain, untilSignal } from './runtime.js';

/**
 * The codec server: Temporal's remote codec protocol over HTTP, so that authorised operators read
 * payloads in the Web UI (`--ui-codec-endpoint`, or the UI's "Codec Server" setting) and in the
 * Temporal CLI (`--codec-endpoint`), while the keys stay with it.
 *
 *   POST /decode, POST /encode      body and answer: {"payloads":[{"metadata":{k: base64}, "data": base64}]}
 *   POST /{namespace}/decode|encode the Temporal CLI's `--codec-endpoint 'http://host/{namespace}'` form
 *   POST /t/{token}/decode|encode   the token in the path, for a Web UI that sends no Authorization
 *                                   header (one without its own login): whoever can read the UI's
 *                                   settings can then decode, so protect the UI accordingly
 *
 * Every request but a CORS preflight needs a token (`Authorization: Bearer <token>`, compared in
 * constant time) before its body is read: 401 otherwise. The namespace comes from the `X-Namespace`
 * header (or the path); with `namespaces` configured, any other is 403. Browsers may call it from
 * the configured Web UI origins only (preflight answered, credentials allowed). Each request is
 * logged with the token's name, the namespace and the payload count, never a payload.
 */

export interface CodecServerToken {
  /** Who holds it: named in the access log. */
  id: string;
  token: string;
}

export interface CodecServerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  codec: PayloadCodec;
  tokens: CodecServerToken[];
  /** Web UI origins allowed to call from a browser, e.g. `http://localhost:8233`. */
  corsOrigins: string[];
  /** When given, the only namespaces served. */
  namespaces?: string[];
  /** Bytes; 8 MiB by default (a page of history payloads). */
  bodyLimit?: number;
  log?: (line: string) => void;
}

export interface CodecServer {
  url: string;
  close(): Promise<void>;
}

const MIN_TOKEN_LENGTH = 24;
const MAX_PAYLOADS = 10_000;
const base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'not base64');
const PayloadsSchema = z.object({
  payloads: z
    .array(z.object({ metadata: z.record(z.string(), base64).optional(), data: base64.optional() }))
    .max(MAX_PAYLOADS),
});
type JsonPayloads = z.infer<typeof PayloadsSchema>;

const toPayload = (p: JsonPayloads['payloads'][number]): Payload => ({
  metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, new Uint8Array(Buffer.from(v, 'base64'))])),
  data: new Uint8Array(Buffer.from(p.data ?? '', 'base64')),
});
const fromPayload = (p: Payload) => ({
  metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v ?? new Uint8Array()).toString('base64')])),
  data: Buffer.from(p.data ?? new Uint8Array()).toString('base64'),
});

/**
 * A payload codec that asks a codec server (this one, or any speaking Temporal's protocol): a CLI
 * user with a token encodes and decodes without holding the keys.
 */
export class RemoteCodec implements PayloadCodec {
  constructor(
    private readonly endpoint: string,
    private readonly opts: { authorization?: string; namespace: string; timeoutMs?: number },
  ) {}

  encode(payloads: Payload[]): Promise<Payload[]> {
    return this.call('encode', payloads);
  }

  decode(payloads: Payload[]): Promise<Payload[]> {
    return this.call('decode', payloads);
  }

  private async call(op: 'encode' | 'decode', payloads: Payload[]): Promise<Payload[]> {
    if (!payloads.length) return payloads;
    const url = `${this.endpoint.replace(/\/+$/, '')}/${op}`;
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-namespace': this.opts.namespace, ...(this.opts.authorization ? { authorization: this.opts.authorization } : {}) },
      body: JSON.stringify({ payloads: payloads.map(fromPayload) }),
      signal: AbortSignal.timeout(this.opts.timeoutMs ?? 10_000),
      redirect: 'error',
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`codec server ${new URL(url).origin} answered ${res.status} to ${op}: ${text.slice(0, 200)}`);
    const body = PayloadsSchema.safeParse(JSON.parse(text));
    if (!body.success || body.data.payloads.length !== payloads.length) throw new Error(`codec server ${new URL(url).origin} answered ${op} with something that is not its payloads`);
    return body.data.payloads.map(toPayload);
  }
}

/** Reads `id:token` entries (commas, spaces or newlines between; `#` comment lines); `ferry keygen` makes good ones. */
export function parseCodecServerTokens(text: string, source: string): CodecServerToken[] {
  const entries = text
    .split('\n')
    .filter((l) => !l.trim().startsWith('#'))
    .join(',')
    .split(/[,\s]+/)
    .filter(Boolean);
  if (!entries.length) throw new ConfigError(`invalid tokens in ${source}: no token given`);
  return entries.map((entry, i) => {
    const at = entry.indexOf(':');
    const id = at > 0 ? entry.slice(0, at) : '';
    const token = entry.slice(at + 1);
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(id)) throw new ConfigError(`invalid tokens in ${source}: entry ${i + 1} is not \`name:token\``);
    if (token.length < MIN_TOKEN_LENGTH) throw new ConfigError(`invalid tokens in ${source}: the token of ${id} has fewer than ${MIN_TOKEN_LENGTH} characters`);
    return { id, token };
  });
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export async function startCodecServer(opts: CodecServerOptions): Promise<CodecServer> {
  if (!opts.tokens.length) throw new ConfigError('the codec server needs at least one token');
  const log = opts.log ?? ((line: string) => console.log(line));
  const origins = new Set(opts.corsOrigins.map((o) => new URL(o).origin));
  const tokens = opts.tokens.map((t) => ({ id: t.id, token: Buffer.from(t.token) }));
  const app = Fastify({ bodyLimit: opts.bodyLimit ?? 8 * 1024 * 1024, logger: false });

  /** The holder of this token: every token is compared (constant time, no early exit). */
  const holderOf = (given: string | undefined): string | undefined => {
    if (!given) return undefined;
    const g = Buffer.from(given);
    let found: string | undefined;
    for (const t of tokens) if (t.token.length === g.length && timingSafeEqual(t.token, g) && !found) found = t.id;
    return found;
  };

  const cors = (req: FastifyRequest, reply: FastifyReply): boolean => {
    const origin = req.headers.origin;
    reply.header('vary', 'Origin');
    if (!origin || !origins.has(origin)) return false;
    reply.header('access-control-allow-origin', origin);
    reply.header('access-control-allow-credentials', 'true');
    return true;
  };

  // Authentication before the body is read: an unauthenticated caller costs no parsing.
  app.addHook('onRequest', async (req, reply) => {
    if (req.method === 'OPTIONS') return;
    cors(req, reply);
    const params = /^\/t\/([^/]+)\//.exec(req.url);
    const bearer = /^Bearer (.+)$/i.exec(req.headers.authorization ?? '')?.[1];
    const holder = holderOf(params ? decodeURIComponent(params[1]!) : bearer);
    if (!holder) {
      reply.header('www-authenticate', 'Bearer realm="ferry codec server"');
      throw new HttpError(401, 'a valid token is needed (Authorization: Bearer <token>)');
    }
    (req as FastifyRequest & { holder?: string }).holder = holder;
  });

  app.options('*', async (req, reply) => {
    if (!cors(req, reply)) return reply.code(403).send({ error: 'origin not allowed' });
    reply.header('access-control-allow-methods', 'POST, OPTIONS');
    reply.header('access-control-allow-headers', 'Authorization, Content-Type, X-Namespace');
    reply.header('access-control-max-age', '600');
    return reply.code(204).send();
  });

  const serve = (op: 'encode' | 'decode') => async (req: FastifyRequest<{ Params: { namespace?: string } }>, reply: FastifyReply) => {
    const header = req.headers['x-namespace'];
    const fromHeader = Array.isArray(header) ? header[0] : header;
    const fromPath = req.params.namespace;
    if (fromPath && fromHeader && fromPath !== fromHeader) throw new HttpError(400, 'X-Namespace and the path name different namespaces');
    const namespace = fromPath ?? fromHeader;
    if (opts.namespaces && (!namespace || !opts.namespaces.includes(namespace))) throw new HttpError(403, `namespace ${JSON.stringify(namespace ?? '')} is not served here`);
    const body = PayloadsSchema.safeParse(req.body);
    if (!body.success) throw new HttpError(400, `invalid body: ${z.prettifyError(body.error)}`);
    const payloads = body.data.payloads.map(toPayload);
    let result: Payload[];
    try {
      result = op === 'decode' ? await opts.codec.decode(payloads) : await opts.codec.encode(payloads);
    } catch (e) {
      // names a key id at most (the codec's errors carry no payload)
      throw new HttpError(400, `cannot ${op}: ${(e as Error).message}`);
    }
    log(`codec server: ${op} ${payloads.length} payload(s) for ${(req as FastifyRequest & { holder?: string }).holder} in namespace ${namespace ?? '(none given)'}`);
    return reply.code(200).header('cache-control', 'no-store').send({ payloads: result.map(fromPayload) });
  };
  for (const op of ['encode', 'decode'] as const) {
    app.post(`/${op}`, serve(op));
    app.post(`/:namespace/${op}`, serve(op));
    app.post(`/t/:token/${op}`, serve(op));
  }

  app.setErrorHandler((err: Error & { statusCode?: number }, _req, reply) => {
    if (err instanceof HttpError) return reply.code(err.status).send({ error: err.message });
    if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) return reply.code(err.statusCode).send({ error: err.message });
    log(`codec server error: ${err.message}`);
    return reply.code(500).send({ error: 'internal error' });
  });
  app.setNotFoundHandler((_req, reply) => reply.code(404).send({ error: 'not found' }));

  const url = await app.listen({ host: opts.host, port: opts.port });
  return { url, close: () => app.close() };
}

/** The codec server's tokens from `FERRY_CODEC_SERVER_TOKENS` or `FERRY_CODEC_SERVER_TOKENS_FILE`. */
export function codecServerTokensFromEnv(env: NodeJS.ProcessEnv = process.env): CodecServerToken[] {
  const name = 'FERRY_CODEC_SERVER_TOKENS';
  const inline = env[name];
  const file = env[`${name}_FILE`];
  if (inline && file) throw new ConfigError(`set ${name} or ${name}_FILE, not both`);
  if (inline) return parseCodecServerTokens(inline, name);
  if (!file) throw new ConfigError(`no codec server tokens: set ${name} (\`name:token[,name:token…]\`) or ${name}_FILE; \`npm run ferry -- keygen --id NAME\` makes one`);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read ${name}_FILE=${file}: ${(e as Error).message}`);
  }
  return parseCodecServerTokens(text, `${name}_FILE=${file}`);
}

if (isMain(import.meta.url)) {
  runMain(async () => {
    const { values } = parseArgs({
      options: {
        host: { type: 'string', default: '127.0.0.1' },
        port: { type: 'string', default: '8234' },
        'ui-origin': { type: 'string', multiple: true, default: ['http://localhost:8233'] },
        namespace: { type: 'string', multiple: true },
      },
    });
    const port = Number(values.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`--port must be a port number, got ${values.port}`);
    const server = await startCodecServer({
      host: values.host!,
      port,
      codec: new EncryptionCodec(requireKeyring(KEY_VARIABLES.codec, 'payload codec keys')),
      tokens: codecServerTokensFromEnv(),
      corsOrigins: values['ui-origin']!,
      ...(values.namespace ? { namespaces: values.namespace } : {}),
    });
    console.log(`codec server at ${server.url} for Web UI origins ${values['ui-origin']!.join(', ')}`);
    await untilSignal();
    await server.close();
  });
}
