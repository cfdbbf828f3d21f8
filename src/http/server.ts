import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { toError } from '../errors.js';
import type { Logger } from '../log.js';
import type { HealthReport, MetricsExposition } from '../ports/status.js';

export interface HttpServerOptions {
  host: string;
  port: number;
  health: HealthReport;
  metrics: MetricsExposition;
  logger: Logger;
}

/** /healthz, /readyz, /metrics and /status (SPEC §5), on node:http. */
export class HttpServer {
  private server: Server | null = null;
  private readonly log: Logger;

  constructor(private readonly options: HttpServerOptions) {
    this.log = options.logger.child({ component: 'http' });
  }

  async start(): Promise<AddressInfo> {
    const server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        this.log.error({ err: toError(err), path: req.url }, 'request failed');
        if (!res.headersSent) send(res, 500, 'text/plain', 'internal error\n');
        else res.end();
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.options.port, this.options.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    const address = server.address() as AddressInfo;
    this.log.info({ host: address.address, port: address.port }, 'http listening');
    return address;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return send(res, 405, 'text/plain', 'method not allowed\n');
    }
    const { health, metrics } = this.options;
    switch (path) {
      case '/healthz': {
        const live = health.liveness();
        return sendJson(res, live.alive ? 200 : 503, live.alive ? { status: 'ok' } : { status: 'unhealthy', reason: live.reason });
      }
      case '/readyz': {
        const ready = health.readiness();
        return sendJson(res, ready.ready ? 200 : 503, ready);
      }
      case '/metrics':
        return send(res, 200, metrics.contentType, await metrics.text());
      case '/status':
        return sendJson(res, 200, health.status());
      default:
        return send(res, 404, 'text/plain', 'not found: try /healthz, /readyz, /metrics or /status\n');
    }
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (server === null) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store' });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, 'application/json', `${JSON.stringify(value)}\n`);
}
