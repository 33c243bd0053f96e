import type { Gateway } from '../../actors/gateway.ts';
import type { Router } from '../../http/router.ts';
import type { TemplateView } from '../../protocol/views.ts';

export function templateRoutes(router: Router, gw: Gateway): void {
  // Each template says what its backend can do, so clients (the portal) need not know backends.
  const view = (t: { name: string; path: string; backend: string }): TemplateView => {
    const c = gw.capabilities(t.backend);
    return { name: t.name, path: t.path, backend: t.backend, capabilities: { snapshots: c.snapshots, pool: c.pool } };
  };
  router
    .on('GET', '/templates', () => ({ status: 200, body: gw.templates().map(view) }))
    .on('POST', '/templates/reload', async () => {
      const r = await gw.reloadTemplates();
      return { status: 200, body: { ...r, templates: r.templates.map(view) } };
    });
}
