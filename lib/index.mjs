// Plain-node entry for `import ... from 'coppice'`: the sources are TypeScript, loaded through
// tsx's scoped loader (nothing is registered globally). Types come from src/index.ts.
import { tsImport } from 'tsx/esm/api';

const m = await tsImport('../src/index.ts', import.meta.url);
export const { startApp, resolveApiKey, parseServeArgs, createLogger, CoppiceError, ERROR_CODES, HTTP_STATUS, errorBody } = m;
