import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FileAddressError, isConfinedPath, resolveInRoot } from '../../src/FileAddress.js';

const root = path.resolve('/srv/ferry/data');

describe('resolveInRoot', () => {
  it('resolves relative and absolute endpoints inside the root', () => {
    expect(resolveInRoot(root, 'in/a.bin')).toBe(path.join(root, 'in/a.bin'));
    expect(resolveInRoot(root, './in/../out')).toBe(path.join(root, 'out'));
    expect(resolveInRoot(root, path.join(root, 'x'))).toBe(path.join(root, 'x'));
    expect(resolveInRoot(root, '.')).toBe(root);
    // A name that merely starts with two dots is not a parent reference.
    expect(resolveInRoot(root, '..data/f')).toBe(path.join(root, '..data/f'));
  });

  it.each(['..', '../other', 'in/../../other', '/etc/passwd', path.resolve(root, '..', 'data-evil/x'), 'a\0b', ''])(
    'rejects %j',
    (endpoint) => {
      expect(() => resolveInRoot(root, endpoint)).toThrow(FileAddressError);
    },
  );

  it('names the endpoint and the root in the error', () => {
    try {
      resolveInRoot(root, '../../etc/shadow');
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(FileAddressError);
      expect((err as Error).message).toContain('../../etc/shadow');
      expect((err as Error).message).toContain(root);
    }
  });
});

describe('isConfinedPath', () => {
  it.each(['a', 'a/b/c.txt', './a', 'a/../b', '..data', 'a/..b'])('accepts %j', (p) => {
    expect(isConfinedPath(p)).toBe(true);
  });

  it.each(['', '/abs', '..', '../a', 'a/../../b', 'a/b/../../..', 'a\0', 'C:\\x', 'C:x', '\\\\server\\share'])('rejects %j', (p) => {
    expect(isConfinedPath(p)).toBe(false);
  });
});
