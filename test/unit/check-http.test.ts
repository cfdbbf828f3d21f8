import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { httpChecks, httpPortFree } from '../../src/commands/check/http-checks.js';
import { render } from './check-fixtures.js';

describe('check: the HTTP port', () => {
  it('finds a port that another process holds, and one that is free', async () => {
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen({ host: '127.0.0.1', port: 0 }, resolve));
    const port = (holder.address() as { port: number }).port;
    try {
      const taken = await httpPortFree('127.0.0.1', port);
      expect(taken).toMatchObject({ free: false, code: 'EADDRINUSE' });
      expect(render(httpChecks('127.0.0.1', port, taken))).toEqual([
        `fail http 127.0.0.1:${port}: in use by another process | stop it, or set http.port to a free port (HTTP_PORT in the example config), or 0 for any`,
      ]);
    } finally {
      await new Promise((resolve) => holder.close(resolve));
    }
    const free = await httpPortFree('127.0.0.1', port);
    expect(free).toEqual({ free: true });
    expect(render(httpChecks('127.0.0.1', port, free))).toEqual([`ok http 127.0.0.1:${port}: free for /healthz, /readyz, /metrics and /status`]);
    expect(render(httpChecks('0.0.0.0', 0, null))).toEqual(['ok http: port 0, a free port is picked at start (logged as "http listening")']);
  });

  it('says what to do for an address that is not this machine\'s', async () => {
    const result = await httpPortFree('192.0.2.1', 9464);
    expect(result).toMatchObject({ free: false, code: 'EADDRNOTAVAIL' });
    expect(render(httpChecks('192.0.2.1', 9464, result))[0]).toMatch(/^fail http 192.0.2.1:9464: 192.0.2.1 is not an address of this machine \| set http.host/);
  });
});
