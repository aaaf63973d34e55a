// A real OpenID Provider (npm oidc-provider) for the web UI's OIDC tests.
//
//   node tests/oidc/provider.mjs PORT REDIRECT_URI [CLIENT_ID] [CLIENT_SECRET]
//   (or OIDC_PORT, OIDC_REDIRECT_URI, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET; OIDC_CONFORM=1 keeps the
//   provider's default of putting End-User claims only into userinfo for the code flow;
//   OIDC_DEVICE_FLOW=0 turns the device flow off (no device_authorization_endpoint in discovery);
//   OIDC_DEVICE_TTL=N makes device codes expire after N seconds instead of 600)
//
// Issuer http://127.0.0.1:PORT. One confidential client (client_secret_basic, authorization code,
// PKCE S256 required). Interactions are scriptable with plain HTTP: the provider redirects the
// browser to /interaction/UID; GET /interaction/UID?login=ACCOUNT logs that account in, and the same
// URL answers a consent prompt by granting what was asked. Without ?login= it answers 200 with the
// prompt's name. Prints "ready" on stdout when listening.
//
// Device flow (RFC 8628, on unless OIDC_DEVICE_FLOW=0): the same client may use the device_code
// grant. The person's side is the provider's own pages: GET /device (a form with a hidden xsrf
// field), POST /device xsrf+user_code (the confirmation page), POST /device xsrf+user_code+confirm=yes
// (or abort=yes to deny), then the usual /interaction/UID?login=ACCOUNT steps.
//
// Module resolution: run with NODE_PATH unset; the import below is resolved from .tools/node.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const toolsNode = process.env.OIDC_PROVIDER_MODULES || path.join(repo, '.tools', 'node', 'node_modules');
const require = createRequire(path.join(toolsNode, 'noop.js'));
const { default: Provider } = await import(require.resolve('oidc-provider'));

const port = Number(process.argv[2] || process.env.OIDC_PORT || 0);
const redirectUri = process.argv[3] || process.env.OIDC_REDIRECT_URI;
const clientId = process.argv[4] || process.env.OIDC_CLIENT_ID || 'janus';
const clientSecret = process.argv[5] || process.env.OIDC_CLIENT_SECRET || 'janus-test-secret';
if (!port || !redirectUri) {
  console.error('usage: provider.mjs PORT REDIRECT_URI [CLIENT_ID] [CLIENT_SECRET]');
  process.exit(2);
}

const accounts = {
  alice: { email: 'alice@example.com', email_verified: true, name: 'Alice Admin', groups: ['platform-admins', 'dev'] },
  bob: { email: 'bob@example.com', email_verified: true, name: 'Bob Engineer', groups: ['dev'] },
  mallory: { email: 'mallory@example.com', email_verified: false, name: 'Unverified Mallory', groups: ['platform-admins'] },
  eve: { email: 'eve@elsewhere.test', email_verified: true, name: 'Eve Outsider', groups: ['platform-admins'] },
};

const deviceFlow = process.env.OIDC_DEVICE_FLOW !== '0';
const deviceTtl = Number(process.env.OIDC_DEVICE_TTL || 600);

const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    grant_types: deviceFlow
      ? ['authorization_code', 'urn:ietf:params:oauth:grant-type:device_code']
      : ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  pkce: { methods: ['S256'], required: () => true },
  scopes: ['openid', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
    profile: ['name'],
  },
  conformIdTokenClaims: process.env.OIDC_CONFORM === '1',
  cookies: { keys: ['janus-oidc-test-cookie-key'] },
  features: { devInteractions: { enabled: false }, deviceFlow: { enabled: deviceFlow } },
  // Merged into the library's defaults: only the device code's lifetime is changed.
  ttl: { DeviceCode: deviceTtl },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    const account = accounts[id];
    if (!account) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, ...account }) };
  },
});

provider.use(async (ctx, next) => {
  const m = ctx.method === 'GET' && /^\/interaction\/([^/]+)$/.exec(ctx.path);
  if (!m) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const login = ctx.query.login;
  if (!login) {
    ctx.type = 'text';
    ctx.body = `prompt ${details.prompt.name}`;
    return undefined;
  }
  if (details.prompt.name === 'login') {
    if (!accounts[login]) ctx.throw(400, `unknown account ${login}`);
    return provider.interactionFinished(ctx.req, ctx.res, { login: { accountId: login } },
      { mergeWithLastSubmission: false });
  }
  if (details.prompt.name === 'consent') {
    const { prompt: { details: missing }, params, session, grantId } = details;
    const grant = grantId ? await provider.Grant.find(grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    const saved = await grant.save();
    return provider.interactionFinished(ctx.req, ctx.res, { consent: { grantId: saved } },
      { mergeWithLastSubmission: true });
  }
  ctx.throw(501, `prompt ${details.prompt.name} not scripted`);
  return undefined;
});

const server = provider.listen(port, '127.0.0.1', () => {
  console.log('ready');
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
