// What coppice tells the e2b SDK about itself. The SDK gates features on `envdVersion`:
// >= 0.4.0 sends no user unless asked (we pick the template's default), >= 0.5.2 allows
// closeStdin, >= 0.5.7 allows octet-stream uploads. 0.6.2+ (file metadata) and 0.6.3+
// (watch events with entries) are not claimed because coppice does not implement them.
export const ENVD_VERSION = '0.5.7';
/** The SDK shows this as the sandbox's client id; E2B uses it for its own routing. */
export const CLIENT_ID = 'coppice';
/** The port the SDK names in `E2b-Sandbox-Port` (envd's); informational here. */
export const ENVD_PORT = 49983;
