// Warm pools: list, warm (optionally streaming progress as NDJSON), and the operator's drain.
import { z } from 'zod';
import type { Gateway } from '../../actors/gateway.ts';
import { CoppiceError } from '../../errors.ts';
import type { Router } from '../../http/router.ts';
import { errorBody } from '../../http/errors.ts';
import { parse, templateId } from '../../protocol/requests.ts';

const warmBody = z.object({ count: z.number().int().min(0).max(1000) }).strict();

export function poolRoutes(router: Router, gw: Gateway): void {
  router
    .on('GET', '/pool', () => ({ status: 200, body: gw.pools() }))
    .on('POST', '/pool/:name/warm', async (ctx) => {
      const name = parse(templateId, ctx.params.name, 'name');
      const { count } = parse(warmBody, await ctx.body());
      if (!String(ctx.req.headers.accept ?? '').includes('application/x-ndjson')) {
        return { status: 200, body: await gw.warmPool(name, count) };
      }
      // Streaming form: one JSON line per progress line, then {"done":...} or {"error":...}.
      gw.poolView(name); // 404 / 501 as a status, before anything is streamed
      const { res } = ctx;
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      try {
        const done = await gw.warmPool(name, count, (line) => res.write(JSON.stringify({ progress: line }) + '\n'));
        res.end(JSON.stringify({ done }) + '\n');
      } catch (err) {
        const e = err instanceof CoppiceError ? err : new CoppiceError('internal', String(err));
        res.end(JSON.stringify({ error: errorBody(e) }) + '\n');
      }
      return 'handled';
    })
    .on('POST', '/pool/:name/drain', async (ctx) => {
      const name = parse(templateId, ctx.params.name, 'name');
      return { status: 200, body: await gw.emptyPool(name) };
    });
}
