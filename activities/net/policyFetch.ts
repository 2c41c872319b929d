import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import type { LookupFunction } from 'node:net';
import { Agent, fetch as undiciFetch, type RequestInit as UndiciRequestInit, type Response as UndiciResponse } from 'undici';
import { checkHttpUrl, isAddressAllowed, rangeOf, UrlPolicyError, type HttpPolicy, type NetworkPolicy } from '../../src/urlPolicy.js';

/**
 * fetch under an HttpPolicy: the URL is checked before any I/O, every name is checked again on the
 * addresses it resolves to at connect time (the socket connects to exactly the checked address, so
 * DNS rebinding between a check and the connection cannot bypass it), and redirects are never
 * followed (a 3xx is a refusal: it would send the request somewhere nobody checked).
 */

/** A resolved address outside the allowed networks. */
export class AddressRefused extends UrlPolicyError {
  constructor(host: string, address: string) {
    super(`${host} resolves to ${address} (${rangeOf(address)}), which is not allowed`);
    this.name = 'AddressRefused';
  }
}

/** A `lookup` for net.connect that fails when any resolved address is outside the policy. */
export function guardedLookup(policy: NetworkPolicy, resolve: typeof dnsLookup = dnsLookup): LookupFunction {
  return ((hostname: string, options: { all?: boolean; family?: number }, callback: (...args: unknown[]) => void) => {
    resolve(hostname, { ...options, all: true }, (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => {
      if (err) return callback(err);
      // one bad address refuses the name: a rebinding answer may mix them
      const bad = addresses.find((a) => !isAddressAllowed(a.address, policy));
      if (bad) return callback(new AddressRefused(hostname, bad.address));
      if (options.all) return callback(null, addresses);
      const first = addresses[0];
      if (!first) return callback(Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' }));
      return callback(null, first.address, first.family);
    });
  }) as LookupFunction;
}

const agents = new WeakMap<typeof dnsLookup, Map<string, Agent>>();
/** One connection pool per policy (and resolver), so pooled sockets were all opened under the same check. */
export function agentFor(policy: HttpPolicy, resolve: typeof dnsLookup = dnsLookup): Agent {
  const trusted = !!policy.allowedUrls; // an allowlist names its destinations: their addresses are the operator's choice
  const key = trusted ? 'trusted' : JSON.stringify([!!policy.allowPrivateNetworks, policy.allowedNetworks ?? []]);
  let pools = agents.get(resolve);
  if (!pools) agents.set(resolve, (pools = new Map()));
  let agent = pools.get(key);
  if (!agent) {
    agent = new Agent(trusted ? {} : { connect: { lookup: guardedLookup(policy, resolve) } });
    pools.set(key, agent);
  }
  return agent;
}

/** A redirect answer: never followed. */
export class RedirectRefused extends UrlPolicyError {
  constructor(origin: string, status: number) {
    super(`${origin} answered a redirect (${status}); redirects are not followed`);
    this.name = 'RedirectRefused';
  }
}

export interface PolicyFetchOptions {
  /** Names this request in errors (`destination`, `source`). */
  what?: string;
  /** Test seam: resolve names with this instead of the system resolver. */
  resolve?: typeof dnsLookup;
}

/** fetch `url` under `policy`. Throws UrlPolicyError (or a subclass) for every refusal, with the origin only. */
export async function policyFetch(url: string, init: UndiciRequestInit, policy: HttpPolicy, opts: PolicyFetchOptions = {}): Promise<UndiciResponse> {
  const what = opts.what ?? 'URL';
  const checked = checkHttpUrl(url, policy, what);
  let res: UndiciResponse;
  try {
    res = await undiciFetch(checked.href, { ...init, redirect: 'manual', dispatcher: agentFor(policy, opts.resolve) });
  } catch (e) {
    const refused = policyRefusal(e);
    if (refused) throw refused;
    throw e;
  }
  if (res.status >= 300 && res.status < 400) {
    await res.body?.cancel().catch(() => undefined);
    throw new RedirectRefused(`${what} ${checked.origin}`, res.status);
  }
  return res;
}

/** The policy refusal inside an error (fetch wraps connect errors in `cause`), if any. */
export function policyRefusal(e: unknown): UrlPolicyError | undefined {
  for (let cur = e, depth = 0; cur && depth < 5; cur = (cur as { cause?: unknown }).cause, depth++) {
    if (cur instanceof UrlPolicyError) return cur;
  }
  return undefined;
}
