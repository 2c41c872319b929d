import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { PullSessions } from '../../activities/pull/PullSessions.js';

/** A response stand-in: destroy() closes it, as a real ServerResponse does. */
class Res extends EventEmitter {
  destroyed?: Error;
  destroy(error?: Error) {
    this.destroyed = error;
    this.emit('close');
  }
}

describe('PullSessions', () => {
  it('cuts the responses of a revoked token only, and forgets closed ones', () => {
    const sessions = new PullSessions();
    const [a1, a2, b] = [new Res(), new Res(), new Res()];
    sessions.track('a', a1);
    sessions.track('a', a2);
    sessions.track('b', b);
    a2.emit('close'); // finished on its own
    expect(sessions.size).toBe(2);
    expect(sessions.revoke('a')).toBe(1);
    expect(a1.destroyed?.message).toBe('token revoked');
    expect(a2.destroyed).toBeUndefined();
    expect(b.destroyed).toBeUndefined();
    expect(sessions.size).toBe(1);
    expect(sessions.revoke('a')).toBe(0); // revoking twice is harmless
  });
});
