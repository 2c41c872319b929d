import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { REPO_ROOT } from '../worker/temporalCli.js';
import { freePort } from '../test/support/cluster.js';
import { children } from '../test/support/processes.js';
import type { LatencySample } from './latency.js';
import { median, percentile, ratio } from './stats.js';
import type { BenchContext, BenchMode, BenchRow } from './types.js';

/**
 * Eclipse EDC 0.15.1 running the same tiny push, so ferry and EDC can be quoted side by side from
 * one run. Two connectors (provider, consumer), each a JVM assembled from EDC's published Maven
 * artifacts (bench/edc/pom.xml: control plane with an embedded HttpData data plane, in-memory
 * stores, iam-mock), driven through EDC's management API: the provider is seeded with an asset
 * (a 1 KiB HTTP source on loopback), a policy and a contract definition; the consumer negotiates
 * once; then each measured transfer is an HttpData-PUSH to an HTTP sink on loopback, request →
 * COMPLETED as the consumer's management API reports it (polled every 5 ms). Measured at EDC's
 * default state-machine polling (1 s) and tuned to 50 ms. Skipped with a note where there is no
 * java or mvn, or the artifacts cannot be fetched.
 */

const EDC_VERSION = '0.15.1';
const LIB = path.join(REPO_ROOT, '.tools', 'edc', 'lib');
const POM = path.join(import.meta.dirname, 'edc', 'pom.xml');
const EDC_NS = 'https://w3id.org/edc/v0.0.1/ns/';
const DSP_PROTOCOL = 'dataspace-protocol-http:2025-1';
const SAMPLES: Record<BenchMode, { default: number; tuned: number }> = { quick: { default: 0, tuned: 0 }, normal: { default: 10, tuned: 30 }, full: { default: 30, tuned: 100 } };
const POLLING = { default: undefined, tuned: 50 } as const;
type Polling = keyof typeof POLLING;

const skip = (why: string): BenchRow[] => [{ goal: 'edc', measure: `EDC ${EDC_VERSION}: not measured`, ferry: null, baseline: null, ratio: null, unit: '', note: `skipped: ${why}` }];

const has = (cmd: string, arg: string) => spawnSync(cmd, [arg], { stdio: 'ignore' }).status === 0;

/** The EDC jars, fetched once by Maven into .tools/edc/lib (again when the POM changes). */
function fetchJars(log: (m: string) => void): string | undefined {
  const stamp = path.join(LIB, '.pom-sha256');
  const want = createHash('sha256').update(readFileSync(POM)).digest('hex');
  if (existsSync(stamp) && readFileSync(stamp, 'utf8') === want) return undefined;
  log(`fetching EDC ${EDC_VERSION} with Maven into ${LIB}`);
  mkdirSync(LIB, { recursive: true });
  const r = spawnSync('mvn', ['-q', '-B', '-f', POM, 'dependency:copy-dependencies', `-DoutputDirectory=${LIB}`], { encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) return `Maven could not fetch the EDC artifacts: ${(r.stdout + r.stderr).split('\n').find((l) => l.includes('ERROR')) ?? `exit ${r.status}`}`.slice(0, 400);
  writeFileSync(stamp, want);
  return undefined;
}

interface Connector {
  name: 'provider' | 'consumer';
  management: string;
  protocol: string;
  process: ChildProcess;
  /** The end of its log (warnings explain a TERMINATED transfer). */
  log(): string;
}

async function startConnector(name: Connector['name'], dir: string, polling: number | undefined): Promise<Connector> {
  const ports = { api: await freePort(), management: await freePort(), protocol: await freePort(), control: await freePort(), version: await freePort(), public: await freePort() };
  const protocol = `http://127.0.0.1:${ports.protocol}/protocol`;
  const props: Record<string, string | number> = {
    'edc.participant.id': name,
    'edc.hostname': '127.0.0.1',
    'edc.dsp.callback.address': protocol,
    'web.http.port': ports.api,
    'web.http.path': '/api',
    'web.http.management.port': ports.management,
    'web.http.management.path': '/management',
    'web.http.protocol.port': ports.protocol,
    'web.http.protocol.path': '/protocol',
    'web.http.control.port': ports.control,
    'web.http.control.path': '/control',
    'web.http.version.port': ports.version,
    'web.http.version.path': '/version',
    'web.http.public.port': ports.public,
    'web.http.public.path': '/public',
    'edc.dataplane.api.public.baseurl': `http://127.0.0.1:${ports.public}/public`,
  };
  if (polling !== undefined) {
    for (const prefix of ['edc.transfer', 'edc.negotiation.consumer', 'edc.negotiation.provider', 'edc.dataplane']) props[`${prefix}.state-machine.iteration-wait-millis`] = polling;
  }
  const file = path.join(dir, `${name}-${polling ?? 'default'}.properties`);
  writeFileSync(file, Object.entries(props).map(([k, v]) => `${k}=${v}`).join('\n'));
  const child = spawn('java', ['-Xmx512m', `-Dedc.fs.config=${file}`, '-cp', `${LIB}/*`, 'org.eclipse.edc.boot.system.runtime.BaseRuntime'], { stdio: ['ignore', 'pipe', 'pipe'] });
  // killed with the bench's other child processes if the bench is interrupted
  children.add(child);
  child.on('exit', () => children.delete(child));
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const on = (d: Buffer) => {
      output += d.toString();
      if (/Runtime \S+ ready/.test(output)) resolve();
    };
    child.stdout!.on('data', on);
    child.stderr!.on('data', on);
    child.once('exit', (code) => reject(new Error(`EDC ${name} exited (${code}) before it was ready:\n${output.slice(-2000)}`)));
    setTimeout(() => reject(new Error(`EDC ${name} not ready within 180 s:\n${output.slice(-2000)}`)), 180_000).unref();
  });
  // keep reading its logs so the pipe never blocks it; keep the end for error reports
  const keep = (d: Buffer) => (output = (output + d.toString()).slice(-100_000));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  return { name, management: `http://127.0.0.1:${ports.management}/management`, protocol, process: child, log: () => output };
}

async function api(c: Connector, method: 'GET' | 'POST', p: string, body?: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(`${c.management}${p}`, { method, headers: { 'content-type': 'application/json' }, ...(body ? { body: JSON.stringify(body) } : {}) });
  const text = await res.text();
  if (!res.ok) throw new Error(`EDC ${c.name} ${method} ${p}: ${res.status} ${text.slice(0, 300)}`);
  return text ? (JSON.parse(text) as Record<string, unknown>) : {};
}

/** A JSON-LD property by its local name, compacted (`state`) or prefixed (`edc:state`, `odrl:hasPolicy`). */
function prop(o: unknown, name: string): unknown {
  if (!o || typeof o !== 'object') return undefined;
  for (const [k, v] of Object.entries(o)) if (k === name || k.endsWith(`:${name}`) || k.endsWith(`/${name}`)) return v;
  return undefined;
}

async function until<T>(what: string, timeoutMs: number, intervalMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const v = await probe();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`${what}: not within ${timeoutMs} ms`);
}

/** The provider's last logged dispatch failure: why EDC terminated a transfer. */
function terminationReason(provider: Connector): string | undefined {
  const line = provider.log().split('\n').reverse().find((l) => /failed to Dispatch|Cannot process/.test(l));
  const reason = /Cannot process[^"]*|failed to Dispatch[^.]*/.exec(line ?? '');
  return reason?.[0];
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Both connectors at one polling setting: seed, negotiate once, then `n` transfers one at a time after 3 warm-ups. */
interface EdcSamples {
  ms: number[];
  /** Transfers that ended TERMINATED instead (not in `ms`), and the last reason. */
  terminated: number;
  reason?: string;
}

/** EDC ended a transfer TERMINATED (at 50 ms polling its provider may send the start before the consumer stored REQUESTED: 409). */
class Terminated extends Error {}

async function measure(ctx: BenchContext, polling: Polling, n: number, urls: { source: string; sink: string }): Promise<EdcSamples> {
  const provider = await startConnector('provider', ctx.tmpDir, POLLING[polling]);
  const consumer = await startConnector('consumer', ctx.tmpDir, POLLING[polling]).catch((e: unknown) => {
    provider.process.kill('SIGKILL');
    throw e;
  });
  try {
    const context = { '@vocab': EDC_NS };
    await api(provider, 'POST', '/v3/assets', { '@context': context, '@id': 'tiny', properties: { name: 'tiny' }, dataAddress: { type: 'HttpData', baseUrl: urls.source } });
    await api(provider, 'POST', '/v3/policydefinitions', {
      '@context': { ...context, odrl: 'http://www.w3.org/ns/odrl/2/' },
      '@id': 'open',
      policy: { '@context': 'http://www.w3.org/ns/odrl.jsonld', '@type': 'Set', permission: [], prohibition: [], obligation: [] },
    });
    await api(provider, 'POST', '/v3/contractdefinitions', { '@context': context, '@id': 'all', accessPolicyId: 'open', contractPolicyId: 'open', assetsSelector: [] });
    const counterParty = { counterPartyId: 'provider', counterPartyAddress: `${provider.protocol}/2025-1`, protocol: DSP_PROTOCOL };
    const dataset = await api(consumer, 'POST', '/v3/catalog/dataset/request', { '@context': context, '@type': 'DatasetRequest', '@id': 'tiny', ...counterParty });
    const policy = prop(dataset, 'hasPolicy');
    const offerId = prop(Array.isArray(policy) ? policy[0] : policy, '@id');
    if (typeof offerId !== 'string') throw new Error(`no offer in the provider's dataset: ${JSON.stringify(dataset).slice(0, 300)}`);
    const negotiation = await api(consumer, 'POST', '/v3/contractnegotiations', {
      '@context': context,
      '@type': 'ContractRequest',
      ...counterParty,
      policy: { '@context': 'http://www.w3.org/ns/odrl.jsonld', '@id': offerId, '@type': 'Offer', assigner: 'provider', target: 'tiny' },
    });
    const agreementId = await until('contract negotiation FINALIZED', 120_000, 100, async () => {
      const neg = await api(consumer, 'GET', `/v3/contractnegotiations/${String(negotiation['@id'])}`);
      const state = prop(neg, 'state');
      if (state === 'TERMINATED') throw new Error(`contract negotiation terminated: ${JSON.stringify(neg).slice(0, 300)}`);
      return state === 'FINALIZED' ? String(prop(neg, 'contractAgreementId')) : undefined;
    });
    const transfer = async (): Promise<number> => {
      const t0 = performance.now();
      const tp = await api(consumer, 'POST', '/v3/transferprocesses', {
        '@context': context,
        '@type': 'TransferRequest',
        ...counterParty,
        connectorId: 'provider',
        contractId: agreementId,
        transferType: 'HttpData-PUSH',
        dataDestination: { type: 'HttpData', baseUrl: urls.sink },
      });
      await until('transfer COMPLETED', 120_000, 5, async () => {
        const state = prop(await api(consumer, 'GET', `/v3/transferprocesses/${String(tp['@id'])}/state`), 'state');
        if (state === 'TERMINATED') {
          const full = await api(consumer, 'GET', `/v3/transferprocesses/${String(tp['@id'])}`);
          throw new Terminated(`EDC transfer TERMINATED: ${String(prop(full, 'errorDetail') ?? JSON.stringify(full).slice(0, 400))}`);
        }
        return state === 'COMPLETED' ? true : undefined;
      });
      return performance.now() - t0;
    };
    // warm-up; the first transfers may find the data plane not yet registered (self-registration races start-up)
    for (let ok = 0, failed = 0; ok < 3; ) {
      try {
        await transfer();
        ok++;
      } catch (e) {
        if (++failed > 5) throw e;
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
    const out: EdcSamples = { ms: [], terminated: 0 };
    while (out.ms.length < n) {
      try {
        out.ms.push(await transfer());
      } catch (e) {
        if (!(e instanceof Terminated) || ++out.terminated > n) throw e;
        out.reason = terminationReason(provider);
      }
    }
    return out;
  } catch (e) {
    const warnings = (c: Connector) => c.log().split('\n').filter((l) => /WARNING|SEVERE|ERROR|Exception/.test(l) && !/not suitable for production|no-op implementation|No TokenDecorator|participant context id|falling back to default/.test(l)).slice(-5);
    throw new Error(`${(e as Error).message}\nprovider: ${warnings(provider).join('\n')}\nconsumer: ${warnings(consumer).join('\n')}`);
  } finally {
    provider.process.kill('SIGKILL');
    consumer.process.kill('SIGKILL');
  }
}

export async function run(ctx: BenchContext, ferryLatency?: { inCluster?: { ferry: LatencySample[] }; dsp?: { ferry: LatencySample[] } }): Promise<BenchRow[]> {
  if (ctx.mode === 'quick') return skip('--quick does not start EDC (two JVMs per polling setting); run without --quick');
  if (!has('java', '-version')) return skip('no java on PATH');
  if (!has('mvn', '-v')) return skip('no mvn on PATH');
  const fetchError = fetchJars(ctx.log);
  if (fetchError) return skip(fetchError);

  const sent = Buffer.alloc(1024, 7);
  let received = 0;
  const source = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': sent.length }).end(sent));
  const sink = createServer((req, res) => {
    req.on('data', (d: Buffer) => (received += d.length));
    req.on('end', () => res.writeHead(200).end());
  });
  const urls = { source: `${await listen(source)}/tiny`, sink: `${await listen(sink)}/in` };
  try {
    const results: Partial<Record<Polling, EdcSamples>> = {};
    for (const polling of ['default', 'tuned'] as Polling[]) {
      const n = SAMPLES[ctx.mode][polling];
      ctx.log(`EDC ${EDC_VERSION}, ${polling} polling: ${n} tiny pushes one at a time`);
      results[polling] = await measure(ctx, polling, n, urls);
    }
    if (received === 0) throw new Error('the EDC transfers COMPLETED but the sink received no bytes');
    ctx.attach('edc', { version: EDC_VERSION, samples: results });
    const ferryMs = { dsp: ferryLatency?.dsp?.ferry.map((s) => s.ms) ?? [], inCluster: ferryLatency?.inCluster?.ferry.map((s) => s.ms) ?? [] };
    const rows: BenchRow[] = [];
    const stats = { p50: (xs: number[]) => median(xs), p99: (xs: number[]) => percentile(xs, 99) };
    const variants = [
      ['inCluster', 'p50', 'ferry in-cluster'],
      ['dsp', 'p50', 'ferry over DSP'],
      ['dsp', 'p99', 'ferry over DSP'],
    ] as const;
    for (const polling of ['default', 'tuned'] as Polling[]) {
      const { ms: edc, terminated, reason } = results[polling]!;
      const label = polling === 'default' ? 'default polling (1 s)' : 'tuned 50 ms polling';
      for (const [which, p, who] of variants) {
        const ferry = ferryMs[which].length ? stats[p](ferryMs[which]) : null;
        rows.push({
          goal: 'edc',
          measure: `tiny push request → COMPLETED ${p}: ${who} vs EDC ${EDC_VERSION}, ${label}`,
          ferry,
          baseline: stats[p](edc),
          ratio: ratio(ferry, stats[p](edc)),
          unit: 'ms',
          ...(polling === 'tuned' && which === 'inCluster' ? { target: 'ratio ≤ 0.5 (half of EDC tuned)' } : {}),
          note: `EDC: ${edc.length} HttpData-PUSH transfers one at a time between two EDC connectors over DSP on loopback${terminated ? ` (and ${terminated} more that EDC TERMINATED, not counted: ${reason ?? '?'})` : ''}; ferry: this run's latency goal${ferry === null ? ' (not run: run it too for the ferry figure)' : ''}; ratio = ferry/EDC (lower is better)`,
        });
      }
    }
    return rows;
  } finally {
    source.close();
    sink.close();
  }
}
