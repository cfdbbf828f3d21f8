import { createServer } from 'node:net';
import { fail, ok, type CheckLine } from './report.js';

/** Whether `run` could listen on http.host:http.port now: bind, then let go at once. */
export async function httpPortFree(host: string, port: number): Promise<{ free: true } | { free: false; code: string; message: string }> {
  return await new Promise((resolve) => {
    const server = createServer();
    server.once('error', (err: Error & { code?: string }) => resolve({ free: false, code: err.code ?? 'ERROR', message: err.message }));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve({ free: true })));
  });
}

export function httpChecks(host: string, port: number, result: Awaited<ReturnType<typeof httpPortFree>> | null): CheckLine[] {
  const name = `http ${host}:${port}`;
  if (port === 0 || result === null) return [ok(`http: port 0, a free port is picked at start (logged as "http listening")`)];
  if (result.free) return [ok(`${name}: free for /healthz, /readyz, /metrics and /status`)];
  switch (result.code) {
    case 'EADDRINUSE':
      return [fail(`${name}: in use by another process`, 'stop it, or set http.port to a free port (HTTP_PORT in the example config), or 0 for any')];
    case 'EACCES':
      return [fail(`${name}: this user may not listen on port ${port}`, 'use a port above 1023')];
    case 'EADDRNOTAVAIL':
      return [fail(`${name}: ${host} is not an address of this machine`, 'set http.host to 0.0.0.0, 127.0.0.1 or an address of this machine')];
    default:
      return [fail(`${name}: cannot listen: ${result.message}`, 'set http.host and http.port to an address and port this machine can listen on')];
  }
}
