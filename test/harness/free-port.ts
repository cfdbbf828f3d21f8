import { createServer } from 'node:net';

/**
 * A TCP port on 127.0.0.1 that was free a moment ago. Nothing reserves it: another process may take it
 * before the caller binds, so callers that start a server on it should retry on "address in use".
 */
export async function freePort(): Promise<number> {
  return await new Promise<number>((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error('could not read the port of a listening socket'));
        return;
      }
      const { port } = address;
      server.close((err) => (err ? reject(err) : resolve(port)));
    });
  });
}

/** A server could not bind its port: another process took it after freePort() found it free. */
export class PortInUseError extends Error {
  constructor(what: string | number) {
    super(typeof what === 'number' ? `port ${what} is already in use` : `${what}: port already in use`);
  }
}

/** How many times a start picks free ports before it gives up. */
const START_ATTEMPTS = 5;

/**
 * Runs `attempt` (numbered from 1), which picks free ports and starts a server on them, again while it
 * fails with a PortInUseError (a port taken between freePort() and the server's bind, by another test
 * worker), up to START_ATTEMPTS times; any other failure is thrown at once.
 */
export async function retryOnPortInUse<T>(attempt: (n: number) => Promise<T>): Promise<T> {
  for (let n = 1; ; n++) {
    try {
      return await attempt(n);
    } catch (err: unknown) {
      if (n >= START_ATTEMPTS || !(err instanceof PortInUseError)) throw err;
    }
  }
}
