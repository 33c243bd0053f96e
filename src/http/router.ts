// A small router: `METHOD /path/:param` patterns, matched in order. Handlers return a Reply;
// throwing a CoppiceError (or a zod error) is how they say no. Nothing else lives here.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { badRequest } from '../errors.ts';

export interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  params: Record<string, string>;
  query: URLSearchParams;
  /**
   * Parsed JSON body (undefined when there is none). `limit` lowers the gateway's body limit for
   * routes whose schema bounds their body far below it (413 before anything is parsed).
   */
  body(limit?: number): Promise<unknown>;
}

export type Reply = { status: number; body?: unknown; headers?: Record<string, string> } | 'handled';
export type Handler = (ctx: Ctx) => Promise<Reply> | Reply;

interface Route {
  method: string;
  pattern: string;
  regex: RegExp;
  keys: string[];
  handler: Handler;
  open: boolean;
}

export class Router {
  private readonly routes: Route[] = [];

  /** `open` routes skip authentication (health only). */
  on(method: string, pattern: string, handler: Handler, opts: { open?: boolean } = {}): this {
    const keys: string[] = [];
    const source = pattern.replace(/:([a-zA-Z]+)/g, (_, k: string) => {
      keys.push(k);
      return '([^/]+)';
    });
    this.routes.push({ method, pattern, regex: new RegExp(`^${source}/?$`), keys, handler, open: opts.open ?? false });
    return this;
  }

  match(method: string, path: string): { route: Route; params: Record<string, string> } | { allowed: string[] } | null {
    const allowed: string[] = [];
    for (const route of this.routes) {
      const m = route.regex.exec(path);
      if (!m) continue;
      if (route.method !== method) {
        allowed.push(route.method);
        continue;
      }
      const params: Record<string, string> = {};
      route.keys.forEach((k, i) => (params[k] = decodeParam(k, m[i + 1]!)));
      return { route, params };
    }
    return allowed.length ? { allowed } : null;
  }
}

/** A malformed percent-escape (`%E0%A4%A`, `%zz`) is the client's mistake: 400 naming the parameter. */
function decodeParam(key: string, raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw badRequest(key, 'malformed percent-encoding in the path');
  }
}
