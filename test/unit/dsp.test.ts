import { describe, expect, it } from 'vitest';
import { pathOfMessage } from '../../src/dsp.js';
import { isUnder } from '../../src/urlPolicy.js';

describe('DSP addresses', () => {
  it('matches a connector base with or without trailing slashes, and paths below it', () => {
    expect(isUnder('http://c.example/dsp/', 'http://c.example/dsp')).toBe(true);
    expect(isUnder('http://c.example/dsp', 'http://c.example/dsp/')).toBe(true);
    expect(isUnder('http://c.example/dsp/callback', 'http://c.example/dsp')).toBe(true);
  });

  it('compares whole segments: a neighbouring port or path is another connector', () => {
    expect(isUnder('http://c.example:80801', 'http://c.example:8080')).toBe(false);
    expect(isUnder('http://c.example/dspx', 'http://c.example/dsp')).toBe(false);
  });

  it('names the path of each message', () => {
    expect(pathOfMessage('TransferSuspensionMessage')).toBe('suspension');
    expect(pathOfMessage('TransferStartMessage')).toBe('start');
  });
});
