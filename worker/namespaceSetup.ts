import { isGrpcServiceError, type Connection } from '@temporalio/client';
import protos from '@temporalio/proto';

const { temporal } = protos;
import { msToTs } from '@temporalio/common/lib/time.js';
import { SEARCH_ATTRIBUTES } from '../src/searchAttributes.js';

/**
 * `ferry namespace setup`: what a namespace needs before ferry runs in it. Creates it when missing,
 * waits until the frontend serves it (a multi-service server refreshes its namespace cache every
 * few seconds), and registers ferry's search attributes through the operator service. Idempotent.
 */

export interface NamespaceSetupReport {
  namespace: string;
  created: boolean;
  searchAttributesAdded: string[];
  searchAttributesPresent: string[];
}

/** gRPC status codes. */
const grpcStatus = { DEADLINE_EXCEEDED: 4, NOT_FOUND: 5, ALREADY_EXISTS: 6, FAILED_PRECONDITION: 9, UNAVAILABLE: 14 } as const;
const RETRYABLE = new Set<number>([grpcStatus.NOT_FOUND, grpcStatus.UNAVAILABLE, grpcStatus.DEADLINE_EXCEEDED, grpcStatus.FAILED_PRECONDITION]);

/** Not there yet, try again. */
class NotYet extends Error {}

async function retrying<T>(what: string, fn: () => Promise<T>, timeoutMs: number, log: (line: string) => void): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (let delay = 250; ; delay = Math.min(delay * 2, 4000)) {
    try {
      return await fn();
    } catch (e) {
      const retryable = e instanceof NotYet || (isGrpcServiceError(e) && RETRYABLE.has(e.code));
      if (!retryable || Date.now() + delay > until) throw e;
      log(`  ${what}: ${isGrpcServiceError(e) ? e.details || e.message : (e as Error).message}; again in ${delay} ms`);
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

export async function setupNamespace(
  connection: Connection,
  namespace: string,
  opts: { retentionDays?: number; timeoutMs?: number; log?: (line: string) => void } = {},
): Promise<NamespaceSetupReport> {
  const log = opts.log ?? (() => undefined);
  const timeoutMs = opts.timeoutMs ?? 60_000;
  let created = false;
  try {
    await connection.workflowService.describeNamespace({ namespace });
  } catch (e) {
    if (!(isGrpcServiceError(e) && e.code === grpcStatus.NOT_FOUND)) throw e;
    log(`creating namespace ${namespace} (retention ${opts.retentionDays ?? 7}d)`);
    try {
      await connection.workflowService.registerNamespace({ namespace, workflowExecutionRetentionPeriod: msToTs(`${opts.retentionDays ?? 7}d`) });
      created = true;
    } catch (err) {
      // another setup created it meanwhile
      if (!(isGrpcServiceError(err) && err.code === grpcStatus.ALREADY_EXISTS)) throw err;
    }
  }
  const types = temporal.api.enums.v1.IndexedValueType;
  const wanted = Object.fromEntries(SEARCH_ATTRIBUTES.map((a) => [a.name, types[`INDEXED_VALUE_TYPE_${a.type}` as keyof typeof types]]));
  const existing = await retrying('waiting for the namespace', () => connection.operatorService.listSearchAttributes({ namespace }), timeoutMs, log);
  const present = new Set(Object.keys(existing.customAttributes ?? {}));
  const missing = Object.fromEntries(Object.entries(wanted).filter(([name]) => !present.has(name)));
  if (Object.keys(missing).length > 0) {
    log(`registering search attributes ${Object.keys(missing).join(', ')}`);
    await retrying('registering search attributes', () => connection.operatorService.addSearchAttributes({ namespace, searchAttributes: missing }), timeoutMs, log);
  }
  // visible to queries only once the frontend's cache has them: wait, so the next start can use them
  await retrying(
    'waiting for the search attributes',
    async () => {
      const now = await connection.operatorService.listSearchAttributes({ namespace });
      const lacking = Object.keys(wanted).filter((n) => !(n in (now.customAttributes ?? {})));
      if (lacking.length > 0) throw new NotYet(`not yet visible: ${lacking.join(', ')}`);
      await connection.workflowService.countWorkflowExecutions({ namespace, query: Object.keys(wanted).map((n) => `${n} = "x"`).join(' OR ') });
    },
    timeoutMs,
    log,
  );
  return { namespace, created, searchAttributesAdded: Object.keys(missing), searchAttributesPresent: [...present].filter((n) => n in wanted) };
}
