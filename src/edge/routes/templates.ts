import type { Gateway } from '../../actors/gateway.ts';
import type { Router } from '../../http/router.ts';

export function templateRoutes(router: Router, gw: Gateway): void {
  router
    .on('GET', '/templates', () => ({
      status: 200,
      body: gw.templates().map((t) => ({ name: t.name, path: t.path, backend: t.backend })),
    }))
    .on('POST', '/templates/reload', async () => ({ status: 200, body: await gw.reloadTemplates() }));
}
