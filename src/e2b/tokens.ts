// envd access tokens. The SDK sends `X-Access-Token` on every envd request when create/connect
// returned `envdAccessToken`; coppice always returns one, so knowing a sandbox's id is not enough to
// run commands in it. A token is an HMAC of the sandbox id under the gateway's secret (its API key):
// nothing to store, the same token after a gateway restart, and a rotated key revokes them all.
import { createHmac, timingSafeEqual } from 'node:crypto';

export interface EnvdTokens {
  token(sandboxId: string): string;
  check(sandboxId: string, presented: string | undefined): boolean;
}

export function createEnvdTokens(secret: string): EnvdTokens {
  const token = (id: string) => createHmac('sha256', secret).update(`coppice-e2b-envd:${id}`).digest('base64url');
  return {
    token,
    check(id, presented) {
      if (!presented) return false;
      const want = Buffer.from(token(id));
      const got = Buffer.from(presented);
      return got.length === want.length && timingSafeEqual(got, want);
    },
  };
}
