import Fastify from 'fastify';

/**
 * A worker's probes: `GET /healthz` answers 200 while the process lives (liveness); `GET /readyz`
 * answers 200 only while the worker is connected and polling, 503 with the reason otherwise
 * (starting, reconnecting, draining after SIGTERM). Both answer JSON.
 */

export interface Readiness {
  ready: boolean;
  /** What the worker is doing: `connecting`, `polling`, `draining`, … */
  state: string;
  detail?: string;
}

export interface HealthServer {
  url: string;
  close(): Promise<void>;
}

export async function startHealthServer(opts: { host: string; port: number; name: string; readiness: () => Promise<Readiness> }): Promise<HealthServer> {
  const app = Fastify({ logger: false });
  app.get('/healthz', async () => ({ status: 'ok', name: opts.name }));
  app.get('/readyz', async (_req, reply) => {
    const r = await opts.readiness().catch((e: unknown): Readiness => ({ ready: false, state: 'unknown', detail: (e as Error).message }));
    return reply.code(r.ready ? 200 : 503).send({ status: r.ready ? 'ready' : 'not ready', name: opts.name, ...r });
  });
  await app.listen({ host: opts.host, port: opts.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : opts.port;
  const host = opts.host === '0.0.0.0' || opts.host === '::' ? '127.0.0.1' : opts.host;
  return { url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`, close: () => app.close() };
}
