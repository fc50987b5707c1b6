// An OpenID Provider on loopback for writ's browser tests, built on oidc-provider: the
// authorization code flow with PKCE (S256) for one client, any login name accepted through
// oidc-provider's development screens, consent granted without asking.
//
// Environment:
//   PORT           port to listen on, on 127.0.0.1 (0 or unset: a free one)
//   CLIENT_ID      the one client's id (required)
//   REDIRECT_URI   its one redirect URI, matched exactly (required)
//   CLIENT_SECRET  its secret, sent with HTTP Basic (client_secret_basic) at the token endpoint;
//                  unset: a public client (token_endpoint_auth_method none)
//   GROUPS_JSON    the `groups` claim of each login, e.g. {"alice":["approvers"],"mallory":[]};
//                  a login not named there has no groups ([])
//
// Once listening it prints one JSON line to stdout, {"issuer":"http://127.0.0.1:PORT"}, and
// nothing else: everything else, oidc-provider's notices included, goes to stderr. SIGTERM and
// SIGINT close it and exit 0.

import * as crypto from 'node:crypto';
import * as http from 'node:http';

import Provider from 'oidc-provider';

// oidc-provider prints notices with console.info: stdout is for the announcement alone.
console.log = console.error;
console.info = console.error;

function fail(message) {
  console.error(`oidc-provider (writ tests): ${message}`);
  process.exit(2);
}

function required(name) {
  const value = process.env[name];
  if (!value) fail(`${name} must be set`);
  return value;
}

const clientId = required('CLIENT_ID');
const redirectUri = required('REDIRECT_URI');
const clientSecret = process.env.CLIENT_SECRET || undefined;
const port = Number(process.env.PORT || 0);
if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`PORT is not a port: ${process.env.PORT}`);

let groups = {};
try {
  groups = JSON.parse(process.env.GROUPS_JSON || '{}');
} catch (error) {
  fail(`GROUPS_JSON is not JSON: ${error.message}`);
}
if (typeof groups !== 'object' || groups === null || Array.isArray(groups)) {
  fail('GROUPS_JSON must be an object of login names to lists of groups');
}
for (const [login, list] of Object.entries(groups)) {
  if (!Array.isArray(list) || !list.every((group) => typeof group === 'string')) {
    fail(`GROUPS_JSON: the groups of ${login} must be a list of strings`);
  }
}

// A signing key of this run's own.
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = {
  ...privateKey.export({ format: 'jwk' }),
  kid: crypto.randomBytes(8).toString('hex'),
  alg: 'RS256',
  use: 'sig',
};

function configuration() {
  return {
    clients: [
      {
        client_id: clientId,
        ...(clientSecret
          ? { client_secret: clientSecret, token_endpoint_auth_method: 'client_secret_basic' }
          : { token_endpoint_auth_method: 'none' }),
        redirect_uris: [redirectUri],
        response_types: ['code'],
        grant_types: ['authorization_code'],
        id_token_signed_response_alg: 'RS256',
      },
    ],
    clientAuthMethods: ['none', 'client_secret_basic'],
    pkce: { required: () => true },
    jwks: { keys: [signingKey] },
    cookies: {
      keys: [crypto.randomBytes(32).toString('hex')],
      // Cookies are per host, not per port: on 127.0.0.1 the client's pages see these too.
      // Names of the provider's own keep them apart from the client's (`_session`...).
      names: {
        session: 'test_op_session',
        interaction: 'test_op_interaction',
        resume: 'test_op_interaction_resume',
      },
    },
    scopes: ['openid', 'email', 'profile', 'groups'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
    },
    // The ID token carries the scopes' claims (email, groups...), not only sub.
    conformIdTokenClaims: false,
    features: {
      devInteractions: { enabled: true },
    },
    async findAccount(_ctx, id) {
      return {
        accountId: id,
        async claims() {
          return {
            sub: id,
            email: `${id}@example.test`,
            email_verified: true,
            name: id.charAt(0).toUpperCase() + id.slice(1),
            groups: Object.hasOwn(groups, id) ? groups[id] : [],
          };
        },
      };
    },
    // No consent screen: the grant covers whatever the request asks for.
    async loadExistingGrant(ctx) {
      const { oidc } = ctx;
      const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
      let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
      if (!grant) {
        grant = new oidc.provider.Grant({
          clientId: oidc.client.clientId,
          accountId: oidc.session.accountId,
        });
      }
      grant.addOIDCScope([...oidc.requestParamOIDCScopes].join(' '));
      grant.addOIDCClaims([...oidc.requestParamClaims]);
      await grant.save();
      return grant;
    },
    renderError(ctx, out, error) {
      console.error('oidc-provider error:', error);
      ctx.type = 'html';
      const text = (value) => String(value ?? '').replace(/[<>&"']/g, '');
      ctx.body = '<!DOCTYPE html><title>oidc-provider error</title>'
        + `<main id="oidc-provider-error"><h1>${text(out.error)}</h1>`
        + `<p id="error_description">${text(out.error_description)}</p></main>`;
    },
  };
}

// Listen first, so that the issuer can name the port picked.
let handle = (_req, res) => {
  res.statusCode = 503;
  res.end();
};
const server = http.createServer((req, res) => handle(req, res));
server.on('error', (error) => fail(`cannot listen on 127.0.0.1:${port}: ${error.message}`));
server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  let provider;
  try {
    provider = new Provider(issuer, configuration());
  } catch (error) {
    fail(`the provider cannot start: ${error.stack ?? error}`);
  }
  provider.on('server_error', (_ctx, error) => console.error('oidc-provider server_error:', error));
  provider.on('authorization.error', (_ctx, error) => console.error('oidc-provider authorization.error:', error.message, error.error_description ?? ''));
  provider.on('grant.error', (_ctx, error) => console.error('oidc-provider grant.error:', error.message, error.error_description ?? ''));
  handle = provider.callback();
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

function stop(signal) {
  console.error(`oidc-provider (writ tests): ${signal}, stopping`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
