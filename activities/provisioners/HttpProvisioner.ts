import { z } from 'zod';
import type { DataAddress } from '../../src/DataAddress.js';
import { DataAddressSchema } from '../../src/schemas/DataAddress.js';
import {
  matches,
  ProvisionRejected,
  type DeprovisionRequest,
  type ProvisionerMatch,
  type ProvisionRequest,
  type ProvisionResult,
  type ProvisionSide,
  type Provisioner,
  type Role,
} from '../../src/Provisioner.js';
import { parseHttpUrl, UrlPolicyError } from '../../src/urlPolicy.js';

/**
 * Delegates provisioning to an external HTTP service:
 *   POST {url}/provision   { flowId, role, side, address, callbackUrl }
 *     200 { address, resource? }   done (the address may be rewritten)
 *     202 { address?, resource? }  pending: the service later POSTs the outcome to callbackUrl
 *   POST {url}/deprovision { flowId, side, resource, reason, callbackUrl }
 *     200/204/404 done, 202 pending
 * A 4xx answer is final (`ProvisionRejected`); 5xx, network errors and timeouts are retried by the caller.
 */
export interface HttpProvisionerOptions {
  name: string;
  /** Base URL of the provisioning service. */
  url: string;
  side: ProvisionSide;
  endpointTypes: string[];
  /** Only addresses whose endpoint starts with this (a rule for some datasets: their sources or destinations lie there). */
  endpointPrefix?: string;
  /** Per request, including reading the answer. */
  timeoutMs?: number;
  /** Extra request headers (credentials for the service); never logged nor put in errors. */
  headers?: Record<string, string>;
}

const ResourceSchema = z.record(z.string(), z.string());
const SyncAnswerSchema = z.object({ address: DataAddressSchema, resource: ResourceSchema.optional() });
const PendingAnswerSchema = z.object({ address: DataAddressSchema.optional(), resource: ResourceSchema.optional() });

/** Answers larger than this are not provisioning answers; refusing them bounds memory. */
const MAX_ANSWER_BYTES = 1024 * 1024;
/** 4xx statuses that mean "try again later", not "your request is wrong". */
const RETRYABLE_4XX = new Set([408, 425, 429]);

export class HttpProvisioner implements Provisioner {
  readonly name: string;
  readonly #base: string;
  readonly #side: ProvisionSide;
  readonly #endpointTypes: ReadonlySet<string>;
  readonly #endpointPrefix: string | undefined;
  readonly #timeoutMs: number;
  readonly #headers: Record<string, string>;

  constructor(opts: HttpProvisionerOptions) {
    if (!opts.name) throw new Error('HttpProvisioner needs a name');
    // The URL policy's parse: http(s) only, no credentials in the URL (they would leak into errors;
    // service credentials go in `headers`), nothing ambiguous in the path.
    try {
      parseHttpUrl(opts.url, `HttpProvisioner ${opts.name}: url`);
    } catch (e) {
      throw new Error(e instanceof UrlPolicyError ? e.message : `HttpProvisioner ${opts.name}: invalid url`);
    }
    const parsed = new URL(opts.url);
    const timeoutMs = opts.timeoutMs ?? 10_000;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new Error(`HttpProvisioner ${opts.name}: timeoutMs must be positive`);
    this.name = opts.name;
    this.#base = parsed.toString().replace(/\/+$/, '');
    this.#side = opts.side;
    this.#endpointTypes = new Set(opts.endpointTypes);
    this.#endpointPrefix = opts.endpointPrefix;
    this.#timeoutMs = timeoutMs;
    this.#headers = { ...opts.headers };
  }

  get match(): ProvisionerMatch {
    return { name: this.name, side: this.#side, endpointTypes: [...this.#endpointTypes], ...(this.#endpointPrefix ? { endpointPrefix: this.#endpointPrefix } : {}) };
  }

  appliesTo(role: Role, side: ProvisionSide, address: DataAddress): boolean {
    return matches(this.match, role, side, address);
  }

  async provision(request: ProvisionRequest): Promise<ProvisionResult> {
    const { status, body } = await this.#post('provision', {
      flowId: request.flowId,
      role: request.role,
      side: request.side,
      address: request.address,
      callbackUrl: request.callbackUrl,
    });
    if (status === 200 || status === 201) {
      const answer = this.#parse('provision', SyncAnswerSchema, body);
      return { address: answer.address, pending: false, resource: { ...answer.resource, flowId: request.flowId } };
    }
    if (status === 202) {
      // A pending answer may come without a body: the address is then rewritten (if at all) by the callback.
      const answer = body.trim() === '' ? {} : this.#parse('provision', PendingAnswerSchema, body);
      return {
        // no address: this provisioner rewrites nothing (now; its callback may still)
        ...(answer.address ? { address: answer.address } : {}),
        pending: true,
        resource: { ...answer.resource, flowId: request.flowId },
      };
    }
    throw this.#failure('provision', status, body);
  }

  async deprovision(request: DeprovisionRequest): Promise<{ pending: boolean }> {
    const { status, body } = await this.#post('deprovision', {
      flowId: request.flowId,
      side: request.side,
      resource: request.resource,
      reason: request.reason,
      callbackUrl: request.callbackUrl,
    });
    // 404: the service no longer knows the resource, which is what releasing wants.
    if (status === 200 || status === 204 || status === 404) return { pending: false };
    if (status === 202) return { pending: true };
    throw this.#failure('deprovision', status, body);
  }

  async #post(op: 'provision' | 'deprovision', payload: unknown): Promise<{ status: number; body: string }> {
    const url = `${this.#base}/${op}`;
    try {
      const response = await fetch(url, {
        method: 'POST',
        headers: { ...this.#headers, 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify(payload),
        // A redirect would turn the POST into a GET elsewhere: treat it as an answer instead.
        redirect: 'manual',
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
      return { status: response.status, body: await readLimited(response, MAX_ANSWER_BYTES) };
    } catch (err) {
      const e = err as Error;
      const why = e.name === 'TimeoutError' ? `timed out after ${this.#timeoutMs} ms` : describeNetworkError(e);
      throw new Error(`provisioner ${this.name}: POST ${url} failed: ${why}`);
    }
  }

  #parse<T>(op: string, schema: z.ZodType<T>, body: string): T {
    let json: unknown;
    try {
      json = JSON.parse(body);
    } catch {
      throw new Error(`provisioner ${this.name}: ${op} answer is not JSON`);
    }
    const result = schema.safeParse(json);
    if (!result.success) {
      throw new Error(`provisioner ${this.name}: invalid ${op} answer: ${z.prettifyError(result.error)}`);
    }
    return result.data;
  }

  #failure(op: string, status: number, body: string): Error {
    // a redirect is never followed: it would send the request (and its credentials) elsewhere, every time
    if (status >= 300 && status < 400) return new ProvisionRejected(`provisioner ${this.name}: ${op} answered a redirect (${status}); redirects are not followed`);
    const message = `provisioner ${this.name}: ${op} answered ${status}: ${serviceMessage(body)}`;
    return status >= 400 && status < 500 && !RETRYABLE_4XX.has(status) ? new ProvisionRejected(message) : new Error(message);
  }
}

/** The service's own explanation: `{error}` or `{message}` of a JSON body, else the text, bounded. */
function serviceMessage(body: string): string {
  let text = body.trim();
  try {
    const json = JSON.parse(text) as unknown;
    if (json && typeof json === 'object') {
      const { error, message } = json as { error?: unknown; message?: unknown };
      if (typeof error === 'string') text = error;
      else if (typeof message === 'string') text = message;
    }
  } catch {
    // Not JSON: use the text as it is.
  }
  if (text === '') return '(no message)';
  return text.length > 500 ? `${text.slice(0, 500)}…` : text;
}

function describeNetworkError(err: Error): string {
  // undici puts the useful part (ECONNREFUSED, ENOTFOUND, …) in the cause.
  const cause = err.cause as { code?: string; message?: string } | undefined;
  return cause?.code ? `${err.message} (${cause.code})` : err.message;
}

async function readLimited(response: Response, limit: number): Promise<string> {
  if (!response.body) return '';
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel();
      throw new Error(`answer larger than ${limit} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}
