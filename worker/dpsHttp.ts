import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

/** What the two DPS HTTP endpoints (data plane, control plane signaling) share: errors, 404s, the admin check. */
export class DpsHttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Errors as `{ error }` with their status; Fastify's own 4xx keep theirs; anything else is a 500 that says nothing. */
export function dpsErrorHandlers(app: FastifyInstance): void {
  app.setErrorHandler((err: Error & { statusCode?: number }, _req: FastifyRequest, reply: FastifyReply) => {
    if (err instanceof DpsHttpError) return reply.code(err.status).send({ error: err.message });
    if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) return reply.code(err.statusCode).send({ error: err.message });
    reply.log.error(err);
    return reply.code(500).send({ error: 'internal error' });
  });
  app.setNotFoundHandler((_req, reply) => reply.code(404).send({ error: 'not found' }));
}

/** Registration routes need the admin token as bearer; without one configured they do not exist (404, as for a wrong token). */
export function requireAdmin(req: FastifyRequest, adminToken: string | undefined): void {
  const expected = Buffer.from(adminToken ?? '');
  const given = Buffer.from((req.headers.authorization ?? '').replace(/^Bearer\s+/i, ''));
  if (!adminToken || expected.length !== given.length || !timingSafeEqual(expected, given)) throw new DpsHttpError(404, 'not found');
}
