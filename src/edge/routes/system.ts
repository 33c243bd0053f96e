import type { IncomingMessage } from 'node:http';
import type { Gateway } from '../../actors/gateway.ts';
import { CoppiceError } from '../../errors.ts';
import type { Router } from '../../http/router.ts';

/** `scrape`: the admin key or a metrics-only key (Prometheus scrapers get their own token). */
export function systemRoutes(router: Router, gw: Gateway, scrape: (req: IncomingMessage) => boolean): void {
  router
    // Open (no key) so probes can use it; it tells only the lifecycle.
    .on(
      'GET',
      '/health',
      () => ({ status: gw.lifecycle === 'serving' ? 200 : 503, body: { status: gw.lifecycle } }),
      { open: true },
    )
    .on(
      'GET',
      '/metrics',
      async (ctx) => {
        if (!scrape(ctx.req)) throw new CoppiceError('unauthorized', 'missing or invalid API key or metrics key');
        return { status: 200, body: await gw.metrics.registry.metrics(), headers: { 'content-type': gw.metrics.registry.contentType } };
      },
      { open: true },
    );
}
