import { inspect } from 'node:util';
import type { Client } from '@temporalio/client';
import type { Payload, PayloadCodec } from '@temporalio/common';
import { Keyring } from '../../src/keys.js';

/**
 * "No secrets in histories", checked: every workflow of the given namespaces, every event of every
 * run, read raw from the server WITHOUT the payload codec (what the server stores and anyone with
 * access to it sees). Every string and every byte field of every event (payload data and metadata,
 * failure messages, search attributes, memos, headers) is searched for each secret in plain, in
 * base64 and base64url (at any alignment, so inside a longer base64 text too), URL-encoded, JSON-
 * escaped and, for binary keys, in hex. A finding names the secret's label, never its value.
 */

export interface Secret {
  /** What the secret is ("codec key cluster-codec", "DSP token consumer→provider"): findings name it. */
  label: string;
  value: Buffer;
}

export interface Finding {
  label: string;
  form: string;
  where: string;
}

/** A secret in the forms a careless encoder would leave it in. Needles shorter than 8 bytes would find noise: refused. */
export function needlesOf(secret: Secret): { form: string; needle: Buffer }[] {
  const { value } = secret;
  if (value.length < 8) throw new Error(`secret ${secret.label} is shorter than 8 bytes: too short to search for`);
  const text = value.toString('utf8');
  const forms: [string, Buffer][] = [
    ['plain', value],
    ['hex', Buffer.from(value.toString('hex'))],
    ['url-encoded', Buffer.from(encodeURIComponent(text))],
    ['json-escaped', Buffer.from(JSON.stringify(text).slice(1, -1))],
  ];
  // base64 of the secret inside a longer byte run: for each of the 3 alignments, the characters that depend on the secret alone
  for (let k = 0; k < 3; k++) {
    const b64 = Buffer.concat([Buffer.alloc(k), value]).toString('base64');
    const from = Math.ceil((8 * k) / 6);
    const to = Math.floor((8 * (k + value.length)) / 6);
    const core = b64.slice(from, to);
    forms.push([`base64 (offset ${k})`, Buffer.from(core)]);
    forms.push([`base64url (offset ${k})`, Buffer.from(core.replace(/\+/g, '-').replace(/\//g, '_'))]);
  }
  const seen = new Set<string>();
  return forms.filter(([, n]) => n.length >= 8 && !seen.has(n.toString('latin1')) && seen.add(n.toString('latin1'))).map(([form, needle]) => ({ form, needle }));
}

/** Secrets out of what a test has: strings (tokens, passwords), raw keys, whole key rings (every key of it). */
export function secretsOf(label: string, value: string | Buffer | Keyring): Secret[] {
  if (value instanceof Keyring) return value.ids.map((id) => ({ label: `${label} key ${id}`, value: value.get(id)! }));
  return [{ label, value: typeof value === 'string' ? Buffer.from(value, 'utf8') : Buffer.from(value) }];
}

/** Searches one buffer for every secret; `where` says where it was. */
export function scanBuffer(data: Buffer, secrets: Secret[], where: string): Finding[] {
  const findings: Finding[] = [];
  for (const secret of secrets) {
    for (const { form, needle } of needlesOf(secret)) {
      if (data.indexOf(needle) >= 0) {
        findings.push({ label: secret.label, form, where });
        break;
      }
    }
  }
  return findings;
}

/** Every string and byte field of a (proto) object, with its path. */
function* fieldsOf(value: unknown, path: string, depth = 0): Generator<{ path: string; data: Buffer }> {
  if (depth > 64 || value === null || value === undefined) return;
  if (typeof value === 'string') yield { path, data: Buffer.from(value, 'utf8') };
  else if (value instanceof Uint8Array) yield { path, data: Buffer.from(value) };
  else if (Array.isArray(value)) for (let i = 0; i < value.length; i++) yield* fieldsOf(value[i], `${path}[${i}]`, depth + 1);
  else if (typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) if (typeof v !== 'function') yield* fieldsOf(v, path ? `${path}.${k}` : k, depth + 1);
  }
}

/** Every raw event of one run, page by page, as the server stores them (no codec). */
async function rawHistory(client: Client, namespace: string, workflowId: string, runId: string) {
  const events = [];
  let nextPageToken: Uint8Array | undefined;
  do {
    const page = await client.workflowService.getWorkflowExecutionHistory({ namespace, execution: { workflowId, runId }, nextPageToken });
    events.push(...(page.history?.events ?? []));
    nextPageToken = page.nextPageToken?.length ? page.nextPageToken : undefined;
  } while (nextPageToken);
  return events;
}

export interface HistoryScan {
  workflows: number;
  events: number;
  /** Payloads the codec encrypted (a scan that saw none of them on a cluster with a codec is suspicious). */
  encryptedPayloads: number;
  findings: Finding[];
}

/**
 * Scans every workflow run of `namespaces` (listed through visibility, plus `workflowIds` the caller
 * knows of, in case visibility trails) for `secrets`.
 */
export async function scanHistories(client: Client, namespaces: string[], secrets: Secret[], workflowIds: { namespace: string; workflowId: string }[] = []): Promise<HistoryScan> {
  const result: HistoryScan = { workflows: 0, events: 0, encryptedPayloads: 0, findings: [] };
  for (const namespace of namespaces) {
    const runs = new Map<string, { workflowId: string; runId: string }>();
    let nextPageToken: Uint8Array | undefined;
    do {
      const page = await client.workflowService.listWorkflowExecutions({ namespace, pageSize: 1000, nextPageToken });
      for (const e of page.executions ?? []) {
        const workflowId = e.execution?.workflowId;
        const runId = e.execution?.runId;
        if (workflowId && runId) runs.set(`${workflowId}/${runId}`, { workflowId, runId });
      }
      nextPageToken = page.nextPageToken?.length ? page.nextPageToken : undefined;
    } while (nextPageToken);
    for (const known of workflowIds.filter((w) => w.namespace === namespace)) {
      if (![...runs.values()].some((r) => r.workflowId === known.workflowId)) runs.set(known.workflowId, { workflowId: known.workflowId, runId: '' });
    }
    for (const { workflowId, runId } of runs.values()) {
      result.workflows++;
      for (const event of await rawHistory(client, namespace, workflowId, runId)) {
        result.events++;
        for (const { path, data } of fieldsOf(event, '')) {
          if (path.endsWith('metadata.encoding') && data.toString() === 'binary/encrypted') result.encryptedPayloads++;
          result.findings.push(...scanBuffer(data, secrets, `${namespace}/${workflowId} event ${String(event.eventId)} ${path}`));
        }
      }
    }
  }
  return result;
}

/** Searches captured logs (worker output, SDK log lines). */
export function scanLogs(logs: { name: string; text: string }[], secrets: Secret[]): Finding[] {
  return logs.flatMap((log) => scanBuffer(Buffer.from(log.text, 'utf8'), secrets, `log ${log.name}`));
}

export function describeFindings(findings: Finding[]): string {
  return findings.map((f) => `  ${f.label} (${f.form}) in ${f.where}`).join('\n');
}

/** SDK log lines of this process (the Runtime logger of the test cluster writes here too). */
export const sdkLog: string[] = [];
export function recordSdkLog(entry: { level: string; message: string; meta?: unknown }): void {
  sdkLog.push(`${entry.level} ${entry.message} ${entry.meta === undefined ? '' : inspect(entry.meta, { depth: 6, breakLength: Infinity })}`);
}

/**
 * Every payload in an object (a history, an event) replaced by what `codec` decodes it to: what
 * the recorder writes, so recorded histories replay without the (random) keys of the run.
 */
export async function decodePayloadsIn<T>(value: T, codec: PayloadCodec): Promise<T> {
  const isPayload = (v: unknown): v is Payload =>
    !!v && typeof v === 'object' && 'metadata' in v && 'data' in v && (v as Payload).data instanceof Uint8Array && typeof (v as Payload).metadata === 'object';
  const walk = async (v: unknown, depth: number): Promise<unknown> => {
    if (depth > 64 || v === null || typeof v !== 'object' || v instanceof Uint8Array) return v;
    if (isPayload(v)) return (await codec.decode([v]))[0];
    if (Array.isArray(v)) return Promise.all(v.map((x) => walk(x, depth + 1)));
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = await walk(x, depth + 1);
    return out;
  };
  return (await walk(value, 0)) as T;
}
