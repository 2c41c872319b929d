import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AddressRefused, policyFetch, RedirectRefused } from '../../activities/net/policyFetch.js';
import { checkHttpUrl, isAddressAllowed, isUnderUrl, parseHttpUrl, UrlPolicyError } from '../../src/urlPolicy.js';

describe('parseHttpUrl normalises before anything is compared', () => {
  it.each([
    ['HTTP://Example.COM:80/a/../b', 'example.com', 80, ['b']],
    ['http://h/inbox/%2e%2e/admin', 'h', 80, ['admin']],
    ['http://h/inbox/%2E%2e/admin', 'h', 80, ['admin']],
    ['http://h\\inbox\\..\\admin', 'h', 80, ['admin']],
    ['http://h//inbox///x/', 'h', 80, ['inbox', 'x']],
    ['https://h:443/x?q#f', 'h', 443, ['x']],
    ['http://2130706433/', '127.0.0.1', 80, []],
    ['http://0177.0.0.1/', '127.0.0.1', 80, []],
    ['http://0x7f.1/', '127.0.0.1', 80, []],
    ['http://[::ffff:127.0.0.1]/', '127.0.0.1', 80, []],
    ['http://127.0.0.1./x', '127.0.0.1', 80, ['x']],
    ['http://example.com./x', 'example.com', 80, ['x']],
    ['http://h/%7Einbox', 'h', 80, ['~inbox']],
  ])('%s', (raw, host, port, segments) => {
    expect(parseHttpUrl(raw)).toMatchObject({ host, port, segments });
  });

  it.each([
    ['http://user:pass@h/', /credentials/],
    ['http://user@h/', /credentials/],
    ['ftp://h/', /must be http/],
    ['file:///etc/passwd', /must be http/],
    ['not a url', /not a valid URL/],
    ['http://h/a%2fb', /encoded path separator/],
    ['http://h/a%5cb', /encoded path separator/],
    ['http://h/a/%252e%252e/b', undefined],
    ['http://h/%zz', /percent escape/],
  ])('refuses %s', (raw, why) => {
    if (why === undefined) {
      // double encoding decodes once to a harmless literal segment "%2e%2e"
      expect(parseHttpUrl(raw).segments).toEqual(['a', '%2e%2e', 'b']);
      return;
    }
    expect(() => parseHttpUrl(raw)).toThrow(why);
  });
});

describe('isUnderUrl compares scheme, host, port and whole segments', () => {
  const base = 'https://partner.example.com/inbox';
  it.each([
    ['https://partner.example.com/inbox', true],
    ['https://partner.example.com/inbox/', true],
    ['https://PARTNER.example.com.:443/inbox/a/b', true],
    ['https://partner.example.com//inbox/x', true],
    ['https://partner.example.com/inbox/../admin', false],
    ['https://partner.example.com/inbox/%2e%2e/admin', false],
    ['https://partner.example.com/inbox\\..\\admin', false],
    ['https://partner.example.com/inboxes', false],
    ['https://partner.example.com:8443/inbox', false],
    ['http://partner.example.com/inbox', false],
    ['https://partner.example.com.evil.com/inbox', false],
    ['https://evil.com/partner.example.com/inbox', false],
    ['https://u:p@partner.example.com/inbox', false],
    ['https://partner.example.com/inbox%2f..%2fadmin', false],
    ['not a url', false],
  ])('%s: %s', (candidate, expected) => {
    expect(isUnderUrl(candidate, base)).toBe(expected);
  });
});

describe('network ranges', () => {
  it.each([
    ['127.0.0.1', false],
    ['::1', false],
    ['::ffff:7f00:1', false],
    ['10.1.2.3', false],
    ['172.16.0.1', false],
    ['192.168.1.1', false],
    ['169.254.169.254', false],
    ['100.64.0.1', false],
    ['224.0.0.1', false],
    ['0.0.0.0', false],
    ['::', false],
    ['fe80::1', false],
    ['fd00:ec2::254', false],
    ['2002:7f00::1', false],
    ['8.8.8.8', true],
    ['2001:4860:4860::8888', true],
  ])('%s public: %s', (ip, pub) => {
    expect(isAddressAllowed(ip)).toBe(pub);
    expect(isAddressAllowed(ip, { allowPrivateNetworks: true })).toBe(true);
  });

  it('explicit CIDRs allow just their range', () => {
    const policy = { allowedNetworks: ['127.0.0.0/8', '::1/128'] };
    expect(isAddressAllowed('127.0.0.5', policy)).toBe(true);
    expect(isAddressAllowed('::1', policy)).toBe(true);
    expect(isAddressAllowed('::ffff:127.0.0.1', policy)).toBe(true);
    expect(isAddressAllowed('10.0.0.1', policy)).toBe(false);
    expect(isAddressAllowed('169.254.169.254', policy)).toBe(false);
  });

  it('checkHttpUrl refuses IP-literal hosts in private ranges without an allowlist, in every spelling', () => {
    for (const raw of ['http://127.0.0.1/', 'http://2130706433/', 'http://0x7f.1/', 'http://[::ffff:127.0.0.1]/', 'http://[::1]/', 'http://169.254.169.254/latest/meta-data/', 'http://0/']) {
      expect(() => checkHttpUrl(raw, {}), raw).toThrow(UrlPolicyError);
    }
    expect(checkHttpUrl('http://127.0.0.1/', { allowedNetworks: ['127.0.0.0/8'] }).host).toBe('127.0.0.1');
  });
});

describe('policyFetch on a loopback server', () => {
  let server: Server;
  let port: number;
  let hits = 0;
  beforeAll(async () => {
    server = createServer((req, res) => {
      hits++;
      if (req.url === '/redirect') return void res.writeHead(302, { location: 'http://169.254.169.254/' }).end();
      res.writeHead(200).end('ok');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => server?.close());

  it('a name resolving to loopback is refused at connect time, nothing reaches the server', async () => {
    const before = hits;
    await expect(policyFetch(`http://localhost:${port}/`, {}, {})).rejects.toBeInstanceOf(AddressRefused);
    // a resolver that answers like a rebinding DNS server: first public, then loopback; the socket gets the checked answer
    let calls = 0;
    const rebinding = ((host: string, opts: object, cb: (e: null, a: { address: string; family: number }[]) => void) =>
      cb(null, [{ address: calls++ === 0 ? '127.0.0.1' : '8.8.8.8', family: 4 }])) as never;
    await expect(policyFetch(`http://rebind.test:${port}/`, {}, {}, { resolve: rebinding })).rejects.toBeInstanceOf(AddressRefused);
    const mixed = ((_h: string, _o: object, cb: (e: null, a: { address: string; family: number }[]) => void) =>
      cb(null, [{ address: '8.8.8.8', family: 4 }, { address: '127.0.0.1', family: 4 }])) as never;
    await expect(policyFetch(`http://mixed.test:${port}/`, {}, {}, { resolve: mixed })).rejects.toBeInstanceOf(AddressRefused);
    expect(hits).toBe(before);
  });

  it('allowed explicitly, the same name connects', async () => {
    const res = await policyFetch(`http://localhost:${port}/`, {}, { allowedNetworks: ['127.0.0.0/8', '::1/128'] });
    expect(await res.text()).toBe('ok');
  });

  it('never follows a redirect', async () => {
    await expect(policyFetch(`http://127.0.0.1:${port}/redirect`, {}, { allowPrivateNetworks: true })).rejects.toBeInstanceOf(RedirectRefused);
  });
});
