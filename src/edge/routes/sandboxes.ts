// REST for sandboxes: parse, turn into one gateway call (an event to an actor), shape the reply.
import type { Gateway } from '../../actors/gateway.ts';
import { createRequestOf } from '../../http/create-request.ts';
import type { Router } from '../../http/router.ts';
import { CONTROL_BODY_LIMIT, coppiceConnectBody, coppiceCreateBody, coppiceTimeoutBody, execBody, forkBody, parse } from '../../protocol/requests.ts';

export function sandboxRoutes(router: Router, gw: Gateway): void {
  router
    .on('POST', '/sandboxes', async (ctx) => {
      const b = parse(coppiceCreateBody, await ctx.body(CONTROL_BODY_LIMIT));
      return { status: 201, body: await gw.create(await createRequestOf(gw, b)) };
    })
    .on('GET', '/sandboxes', () => ({ status: 200, body: gw.list() }))
    .on('GET', '/sandboxes/:id', (ctx) => ({ status: 200, body: gw.view(ctx.params.id!) }))
    .on('DELETE', '/sandboxes/:id', async (ctx) => {
      await gw.destroy(ctx.params.id!);
      return { status: 204 };
    })
    .on('POST', '/sandboxes/:id/exec', async (ctx) => {
      const id = ctx.params.id!;
      gw.view(id); // 404 before the body is looked at
      const b = parse(execBody, await ctx.body());
      const result = await gw.exec(id, {
        argv: b.argv ?? ['/bin/sh', '-c', b.cmd!],
        env: b.env,
        cwd: b.cwd,
        user: b.user,
        timeoutMs: b.timeoutMs ?? 60_000,
        stdin: b.stdin === undefined ? undefined : Buffer.from(b.stdin, 'utf8'),
      });
      return { status: 200, body: result };
    })
    // Running and recently finished commands (streaming and buffered); re-attach with GET /sandboxes/:id/exec/ws.
    .on('GET', '/sandboxes/:id/processes', (ctx) => ({ status: 200, body: gw.processList(ctx.params.id!) }))
    .on('POST', '/sandboxes/:id/pause', async (ctx) => {
      await gw.pause(ctx.params.id!);
      return { status: 204 };
    })
    .on('POST', '/sandboxes/:id/resume', async (ctx) => {
      await gw.resume(ctx.params.id!);
      return { status: 204 };
    })
    .on('POST', '/sandboxes/:id/connect', async (ctx) => {
      const id = ctx.params.id!;
      gw.view(id);
      const b = parse(coppiceConnectBody, await ctx.body(CONTROL_BODY_LIMIT));
      const resumed = await gw.connect(id, (b.timeout ?? 300) * 1000);
      return { status: resumed ? 201 : 200, body: gw.view(id) };
    })
    .on('POST', '/sandboxes/:id/snapshot', async (ctx) => ({ status: 201, body: await gw.snapshotSandbox(ctx.params.id!) }))
    .on('POST', '/sandboxes/:id/fork', async (ctx) => {
      const id = ctx.params.id!;
      gw.view(id);
      const b = parse(forkBody, await ctx.body(CONTROL_BODY_LIMIT));
      const view = await gw.forkSandbox(id, {
        ...(b.timeout !== undefined ? { timeoutMs: b.timeout * 1000 } : {}),
        ...(b.metadata ? { metadata: b.metadata } : {}),
      });
      return { status: 201, body: view };
    })
    .on('GET', '/snapshots', async () => ({ status: 200, body: await gw.listSnapshots() }))
    .on('DELETE', '/snapshots/:id', async (ctx) => {
      await gw.deleteSnapshot(ctx.params.id!);
      return { status: 204 };
    })
    .on('POST', '/sandboxes/:id/timeout', async (ctx) => {
      const id = ctx.params.id!;
      gw.view(id);
      const b = parse(coppiceTimeoutBody, await ctx.body(CONTROL_BODY_LIMIT));
      await gw.setTimeout(id, b.timeout * 1000);
      return { status: 204 };
    });
}
