// Every input the edge accepts, as zod schemas. A failure names the field (see toBadRequest).
import { z, ZodError } from 'zod';
import { badRequest, type CoppiceError } from '../errors.ts';
import { isValidTemplateName } from '../registry/scan.ts';

const MAX_TIMEOUT_S = 30 * 24 * 3600;
const envKey = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be a valid environment variable name');
const envMap = z.record(envKey, z.string().max(128 * 1024)).refine((m) => Object.keys(m).length <= 256, 'at most 256 entries');
const metadata = z
  .record(z.string().min(1).max(128), z.string().max(1024))
  .refine((m) => Object.keys(m).length <= 64, 'at most 64 entries');

/**
 * The largest body a control request (create, connect, fork, timeout) may have: its schema bounds
 * what it can usefully carry, so a bigger one is refused (413) before it is read and parsed.
 */
export const CONTROL_BODY_LIMIT = 1024 * 1024;

export const templateId = z
  .string({ required_error: 'is required' })
  .min(1)
  .max(64)
  .refine(isValidTemplateName, 'must be a template name (letters, digits, ".", "_", "-"; no path)');

export const limitsSchema = z
  .object({
    memoryMiB: z.number().int().min(16).max(1024 * 1024),
    cpus: z.number().min(0.05).max(256),
    pids: z.number().int().min(8).max(1_000_000),
    diskMiB: z.number().int().min(16).max(16 * 1024 * 1024),
  })
  .partial()
  .strict();

export const snapshotId = z.string().regex(/^snap-[a-z0-9]{10}$/, 'must be a snapshot id (snap-xxxxxxxxxx)');

const createFields = z.object({
    templateID: templateId.optional(),
    /** Start from a snapshot's files (templateID then defaults to the snapshot's). */
    snapshotID: snapshotId.optional(),
    /** Seconds, as E2B. */
    timeout: z.number().int().min(1).max(MAX_TIMEOUT_S).optional(),
    metadata: metadata.optional(),
    envVars: envMap.optional(),
    limits: limitsSchema.optional(),
    /** E2B's field: egress beyond the host (default off). */
    allow_internet_access: z.boolean().optional(),
  });

const templateOrSnapshot = (b: { templateID?: string; snapshotID?: string }, ctx: z.RefinementCtx) => {
  if (b.templateID === undefined && b.snapshotID === undefined) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['templateID'], message: 'is required (or give snapshotID)' });
  }
};

/** The fields both create forms share. */
export type CreateSandboxFields = z.infer<typeof createFields>;

/** The create body as E2B's SDKs send it: their extra fields pass (the E2B surface vets them). */
export const createSandboxBody = createFields.passthrough().superRefine(templateOrSnapshot);

/** coppice's own create: an unknown field (a typo like `timout`) is a 400 naming it. */
export const coppiceCreateBody = createFields.strict().superRefine(templateOrSnapshot);

export const forkBody = z
  .object({ timeout: z.number().int().min(1).max(MAX_TIMEOUT_S).optional(), metadata: metadata.optional() })
  .strict();

export const execBody = z
  .object({
    cmd: z.string().min(1).max(1024 * 1024).optional(),
    argv: z.array(z.string().max(1024 * 1024)).min(1).max(4096).optional(),
    env: envMap.optional(),
    cwd: z.string().min(1).max(4096).startsWith('/', 'must be an absolute path').optional(),
    user: z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, 'must be a user name').optional(),
    timeoutMs: z.number().int().min(0).max(24 * 3600 * 1000).optional(),
    stdin: z.string().max(16 * 1024 * 1024).optional(),
  })
  .strict()
  .superRefine((b, ctx) => {
    if ((b.cmd === undefined) === (b.argv === undefined)) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['cmd'], message: 'give exactly one of cmd (a shell string) or argv (an array)' });
    }
  });

export const timeoutBody = z.object({ timeout: z.number().int().min(0).max(MAX_TIMEOUT_S) }).passthrough();
export const connectBody = z.object({ timeout: z.number().int().min(0).max(MAX_TIMEOUT_S).optional() }).passthrough();
/** coppice's own forms of the two above: unknown fields are refused. */
export const coppiceTimeoutBody = timeoutBody.strict();
export const coppiceConnectBody = connectBody.strict();

/** Turn a zod failure into a 400 that names the first bad field. */
export function toBadRequest(err: ZodError, prefix = ''): CoppiceError {
  const issue = err.issues[0]!;
  // An unknown field is named itself, not its parent object.
  const path = issue.code === 'unrecognized_keys' ? [...issue.path, issue.keys[0]!] : issue.path;
  const field = [prefix, ...path.map(String)].filter(Boolean).join('.') || prefix || 'body';
  const message =
    issue.code === 'unrecognized_keys'
      ? `is not a known field${issue.keys.length > 1 ? ` (nor: ${issue.keys.slice(1).join(', ')})` : ''}`
      : issue.code === 'invalid_type' && issue.received === 'undefined'
        ? 'is required'
        : issue.message;
  return badRequest(field, message);
}

export function parse<T>(schema: z.ZodType<T, z.ZodTypeDef, unknown>, value: unknown, prefix = ''): T {
  const r = schema.safeParse(value ?? {});
  if (!r.success) throw toBadRequest(r.error, prefix);
  return r.data;
}
