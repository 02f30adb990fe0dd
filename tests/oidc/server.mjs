// A real OAuth 2.0 authorization server for the worker's interop tests: panva's oidc-provider,
// configured for the client-credentials grant, token introspection and resource indicators.
//
// Usage: node server.mjs '<json>' where <json> is
//   {
//     "clients": [ <client metadata>, ... ],      // registered as given, see below
//     "resources": { "<uri>": { "scope": "a b", "accessTokenTTL": 60 } },  // optional
//     "scopes": ["webhooks:write"],                // optional extra scopes for plain scope requests
//     "port": 0                                    // optional; 0 (the default): the system picks
//   }
// Each client defaults to grant_types ["client_credentials"], no redirect URIs and no response
// types, so a test only states client_id, token_endpoint_auth_method and its credential
// (client_secret, or jwks for private_key_jwt).
//
// It listens on 127.0.0.1, on the given port or one the system picks (a test that stops the
// provider starts another on the same port, so the issuer stays the same), and prints one JSON
// line on stdout:
//   {"issuer":"http://127.0.0.1:<port>","port":<port>,"token_endpoint":"...","introspection_endpoint":"..."}
// It exits when its standard input closes, so a test process that dies takes it along.
//
// Test-only routes (outside the OAuth surface):
//   GET /_test/token_requests  -> {"<client_id>": {"total": n, "issued": n, "rejected": n,
//                                  "kids": {"<kid of the client assertion>": n}}, ...}
//   counting every POST to the token endpoint, by the client id it named (form body or Basic).
//   POST /_test/refresh_jwks?client_id=<id> -> 204 once the client's jwks_uri was fetched again
//   (a provider picking up a rotated JWKS before its cache would expire).

import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import process from 'node:process';

import Provider from 'oidc-provider';

// stdout carries one line, the address; everything the provider says goes to stderr.
const ready = process.stdout.write.bind(process.stdout);
console.log = console.error;
console.info = console.error;

const input = JSON.parse(process.argv[2] ?? process.env.OIDC_TEST_SERVER_CONFIG ?? '{}');
const resources = input.resources ?? {};
const extraScopes = input.scopes ?? [];

const clients = (input.clients ?? []).map((client) => ({
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  ...client,
}));

// client_id -> { total, issued, rejected }
const tokenRequests = new Map();

function countTokenRequest(clientId, issued, kid) {
  const entry = tokenRequests.get(clientId) ?? { total: 0, issued: 0, rejected: 0, kids: {} };
  entry.total += 1;
  if (issued) entry.issued += 1;
  else entry.rejected += 1;
  if (kid) entry.kids[kid] = (entry.kids[kid] ?? 0) + 1;
  tokenRequests.set(clientId, entry);
}

// The kid in the header of a private_key_jwt client assertion, if there is one.
function assertionKid(ctx) {
  const assertion = ctx.oidc?.params?.client_assertion;
  if (typeof assertion !== 'string') return undefined;
  try {
    return JSON.parse(Buffer.from(assertion.split('.')[0], 'base64url').toString('utf8')).kid;
  } catch {
    return undefined;
  }
}

// The client id a token request named: the authenticated client, else the form's client_id,
// else the user of an Authorization: Basic header.
function requestedClientId(ctx) {
  const known = ctx.oidc?.client?.clientId ?? ctx.oidc?.params?.client_id;
  if (known) return known;
  const header = ctx.get('authorization');
  if (header?.toLowerCase().startsWith('basic ')) {
    const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8');
    return decodeURIComponent(decoded.split(':')[0]);
  }
  return 'unknown';
}

const server = createServer();
server.listen(input.port ?? 0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;

  const provider = new Provider(issuer, {
    clients,
    scopes: ['openid', 'offline_access', ...extraScopes],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // No default: a request without `resource` gets a plain (non-audience) token.
        defaultResource: async () => undefined,
        useGrantedResource: async () => false,
        getResourceServerInfo: async (ctx, resourceIndicator) => {
          const server = resources[resourceIndicator];
          if (!server) {
            throw new Provider.errors.InvalidTarget();
          }
          return {
            scope: server.scope ?? '',
            audience: resourceIndicator,
            accessTokenTTL: server.accessTokenTTL ?? 600,
            // Opaque, so the introspection endpoint answers for it.
            accessTokenFormat: 'opaque',
          };
        },
      },
    },
    // Allowed clock skew when checking client assertions; reused jtis are rejected regardless.
    clockTolerance: 5,
    // No browser flows here, but the provider wants cookie keys; fresh ones per run.
    cookies: { keys: [randomBytes(32).toString('base64url')] },
  });

  provider.use(async (ctx, next) => {
    await next();
    if (ctx.method === 'POST' && ctx.path === '/token') {
      countTokenRequest(requestedClientId(ctx), ctx.status === 200, assertionKid(ctx));
    }
  });

  const oauth = provider.callback();
  server.on('request', (req, res) => {
    if (req.method === 'GET' && req.url === '/_test/token_requests') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(Object.fromEntries(tokenRequests)));
      return;
    }
    if (req.method === 'POST' && req.url.startsWith('/_test/refresh_jwks?')) {
      const clientId = new URL(req.url, issuer).searchParams.get('client_id');
      provider.Client.find(clientId)
        .then(async (client) => {
          client.asymmetricKeyStore.freshUntil = 0;
          await client.asymmetricKeyStore.refresh();
          res.writeHead(204);
          res.end();
        })
        .catch((err) => {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(String(err));
        });
      return;
    }
    oauth(req, res);
  });

  ready(`${JSON.stringify({
    issuer,
    port,
    token_endpoint: `${issuer}/token`,
    introspection_endpoint: `${issuer}/token/introspection`,
  })}\n`);
});

process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
