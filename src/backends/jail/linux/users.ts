// User lookup for exec, from the TEMPLATE directory's /etc/passwd and /etc/group: the template is
// operator-made and read-only to sandboxes, whereas the sandbox's merged rootfs is writable by the
// sandbox (it could plant symlinks pointing anywhere on the host), so we never read it from the host.
// Consequence: users added inside a sandbox at runtime are not resolvable by name (numeric uids work).
// Parsed once per template path; reads are synchronous because exec() must return synchronously.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { badRequest } from '../../../errors.ts';

export interface ResolvedUser {
  name: string;
  uid: number;
  gid: number;
  additionalGids: number[];
  home: string;
}

interface Db {
  byName: Map<string, ResolvedUser>;
  byUid: Map<number, ResolvedUser>;
}

function readOptional(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

export function parseUserDb(passwd: string, group: string): Db {
  const gidsOf = new Map<string, number[]>(); // supplementary groups per member name
  for (const line of group.split('\n')) {
    const f = line.split(':');
    if (f.length < 4 || line.startsWith('#')) continue;
    const gid = Number(f[2]);
    if (!Number.isInteger(gid)) continue;
    for (const member of f[3].split(',').filter(Boolean)) {
      const list = gidsOf.get(member) ?? [];
      list.push(gid);
      gidsOf.set(member, list);
    }
  }
  const byName = new Map<string, ResolvedUser>();
  const byUid = new Map<number, ResolvedUser>();
  for (const line of passwd.split('\n')) {
    const f = line.split(':');
    if (f.length < 7 || line.startsWith('#')) continue;
    const uid = Number(f[2]);
    const gid = Number(f[3]);
    if (!Number.isInteger(uid) || !Number.isInteger(gid)) continue;
    const user: ResolvedUser = {
      name: f[0],
      uid,
      gid,
      additionalGids: [...new Set(gidsOf.get(f[0]) ?? [])].filter((g) => g !== gid),
      home: f[5] || '/',
    };
    if (!byName.has(user.name)) byName.set(user.name, user);
    if (!byUid.has(uid)) byUid.set(uid, user);
  }
  return { byName, byUid };
}

export class TemplateUsers {
  private readonly cache = new Map<string, Db>();

  private db(templatePath: string): Db {
    let db = this.cache.get(templatePath);
    if (!db) {
      db = parseUserDb(
        readOptional(join(templatePath, 'etc', 'passwd')),
        readOptional(join(templatePath, 'etc', 'group')),
      );
      this.cache.set(templatePath, db);
    }
    return db;
  }

  has(templatePath: string, name: string): boolean {
    return this.db(templatePath).byName.has(name);
  }

  /** `name`, or a numeric uid (a uid unknown to the template runs with gid = uid and home `/`). */
  resolve(templatePath: string, user: string): ResolvedUser {
    const db = this.db(templatePath);
    const named = db.byName.get(user);
    if (named) return named;
    if (/^\d+$/.test(user)) {
      const uid = Number(user);
      return db.byUid.get(uid) ?? { name: user, uid, gid: uid, additionalGids: [], home: '/' };
    }
    if (user === 'root') return { name: 'root', uid: 0, gid: 0, additionalGids: [], home: '/root' };
    // Said from the sandbox's side: its /etc/passwd, never the template's host path.
    throw badRequest('user', `no user ${JSON.stringify(user)} in the sandbox's /etc/passwd`);
  }

  /** Forget cached databases (after a template rebuild / registry reload). */
  clear(): void {
    this.cache.clear();
  }
}
