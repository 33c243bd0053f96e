// The seed's two discovery passes. Jail: every directory `<root>/<name>-template`.
// Bhyve (only when a root is given): every file `<root>/<name>.img`. A name found by both is
// an operator mistake: the bhyve entry wins (higher fidelity) and a warning says so.
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { ScanResult, TemplateEntry } from '../actors/types.ts';

/** Template names as the API accepts them: no path separators, no dot-dot, DNS-ish. */
export const TEMPLATE_NAME = /^[a-z0-9][a-z0-9_.-]{0,62}$/i;

export function isValidTemplateName(name: string): boolean {
  return TEMPLATE_NAME.test(name) && !name.includes('..');
}

export interface ScanRoots {
  templatesRoot: string;
  bhyveTemplatesRoot?: string;
}

async function entries(dir: string): Promise<import('node:fs').Dirent[]> {
  try {
    return await readdir(dir, { withFileTypes: true });
  } catch (err) {
    // A root that does not exist yet is an empty registry, not a crash.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

export async function scanTemplates(roots: ScanRoots): Promise<ScanResult> {
  const found = new Map<string, TemplateEntry>();
  const warnings: string[] = [];

  for (const d of await entries(roots.templatesRoot)) {
    if (!d.isDirectory() || !d.name.endsWith('-template')) continue;
    const name = d.name.slice(0, -'-template'.length);
    if (!isValidTemplateName(name)) continue;
    found.set(name, { name, path: join(roots.templatesRoot, d.name), backend: 'jail' });
  }

  if (roots.bhyveTemplatesRoot) {
    for (const d of await entries(roots.bhyveTemplatesRoot)) {
      if (!d.isFile() || !d.name.endsWith('.img')) continue;
      const name = d.name.slice(0, -'.img'.length);
      if (!isValidTemplateName(name)) continue;
      const jail = found.get(name);
      if (jail) {
        warnings.push(
          `template "${name}" exists as a jail template (${jail.path}) and a bhyve image; the bhyve image wins`,
        );
      }
      found.set(name, { name, path: join(roots.bhyveTemplatesRoot, d.name), backend: 'bhyve' });
    }
  }

  const templates = [...found.values()].sort((a, b) => a.name.localeCompare(b.name));
  return { templates, warnings };
}
