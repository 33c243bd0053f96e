import type { Gateway } from '../../actors/gateway.ts';
import type { Router } from '../../http/router.ts';

export function systemRoutes(router: Router, gw: Gateway): void {
  router
    // Open (no key) so probes can use it; it tells only the lifecycle.
    .on(
      'GET',
      '/health',
      () => ({ status: gw.lifecycle === 'serving' ? 200 : 503, body: { status: gw.lifecycle } }),
      { open: true },
    )
    .on('GET', '/metrics', async () => ({
      status: 200,
      body: await gw.metrics.registry.metrics(),
      headers: { 'content-type': gw.metrics.registry.contentType },
    }));
}
