import { PassThrough } from 'node:stream';
import { ApplicationFailure } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { createLogger, PinoSdkLogger } from '../../worker/logging.js';

/** Worker logs: one JSON line per event, the SDK's included; expected failures without stack traces. */

function capture() {
  const stream = new PassThrough();
  const lines: Record<string, unknown>[] = [];
  stream.on('data', (d: Buffer) => {
    for (const text of d.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(text) as Record<string, unknown>);
  });
  return { logger: createLogger({ level: 'debug', name: 'ferry-test', destination: stream }), lines };
}

describe('worker logs', () => {
  it('an activity failure that will be retried is one line: type, message and cause, no stack', async () => {
    const { logger, lines } = capture();
    const teed: string[] = [];
    const sdk = new PinoSdkLogger(logger, (e) => teed.push(`${e.level} ${e.message}`));
    const failure = ApplicationFailure.create({ message: 'provisioning service answered 503', type: 'ProvisionUnavailable', cause: new Error('connect ECONNREFUSED 127.0.0.1:9') });
    sdk.warn('Activity failed', { error: failure, workflowId: 'dataflow-consumer-p1', activityType: 'provision', attempt: 2, processId: 'p1', flowId: 'p1' });
    await new Promise((r) => setImmediate(r));
    expect(lines).toHaveLength(1);
    const line = lines[0]!;
    expect(line).toMatchObject({
      level: 'warn',
      name: 'ferry-test',
      msg: 'Activity failed',
      workflowId: 'dataflow-consumer-p1',
      activityType: 'provision',
      attempt: 2,
      processId: 'p1',
      flowId: 'p1',
      err: { type: 'ProvisionUnavailable', message: 'provisioning service answered 503', cause: { type: 'Error', message: 'connect ECONNREFUSED 127.0.0.1:9' } },
    });
    expect(JSON.stringify(line)).not.toContain('    at ');
    expect(typeof line.time).toBe('string');
    expect(teed).toEqual(['WARN Activity failed']);
  });

  it('levels map one to one and below the logger level nothing is written', async () => {
    const stream = new PassThrough();
    const lines: string[] = [];
    stream.on('data', (d: Buffer) => lines.push(...d.toString().split('\n').filter(Boolean)));
    const sdk = new PinoSdkLogger(createLogger({ level: 'warn', destination: stream }));
    sdk.debug('hidden');
    sdk.info('hidden too');
    sdk.error('shown', { taskQueue: 'q' });
    await new Promise((r) => setImmediate(r));
    expect(lines.map((l) => JSON.parse(l) as Record<string, unknown>)).toEqual([expect.objectContaining({ level: 'error', msg: 'shown', taskQueue: 'q' })]);
  });
});
