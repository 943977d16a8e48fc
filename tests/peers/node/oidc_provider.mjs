// A real OpenID Connect provider (node `oidc-provider` 9) for Roster's tests, with fault switches.
//
// Usage: node oidc_provider.mjs --port 0 --client-id ID --client-secret SECRET \
//          --redirect-uri URL --accounts '{"alice":{"oid":"…","tid":"…","preferred_username":"…","name":"…","email":"…"}}'
// (each flag may also come from the environment: OIDC_PORT, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET,
// OIDC_REDIRECT_URI, OIDC_ACCOUNTS). Listens on 127.0.0.1 only. The first stdout line is
// `READY port=N issuer=http://127.0.0.1:N`.
//
// Extra routes next to the provider's own:
//   POST /__control  JSON body; answers the switch state as JSON. Fields (all optional):
//     fault: one of alg_none | hs256_client_secret | wrong_aud | wrong_iss | expired | iat_future |
//            nbf_future | wrong_nonce | unknown_kid | wrong_key_same_kid    (NEXT token response only)
//     claims: {name: value|null}  merged into the NEXT ID token (null deletes), re-signed with the
//             provider's current key
//     rotate_key: true   from now on sign with a NEW key, published in /jwks beside the old ones
//     issuer_mode: "tenant" | "exact"   tenant: every ID token's iss becomes ISSUER/<tid>/v2.0 and the
//             callback carries no `iss` parameter (as Entra's multi-tenant endpoints do)
//     reset: true   clears every switch (rotated keys stay published)
//   GET /__control  the switch state and counters ({jwks_requests, token_requests, kid})
//   GET /common/v2.0/.well-known/openid-configuration   the provider's discovery document with
//       "issuer": "ISSUER/{tenantid}/v2.0" (Entra's common/organizations quirk)
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import * as jose from 'jose';
import Provider from 'oidc-provider';

function arg(name, envName, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i !== -1 && i + 1 < process.argv.length) return process.argv[i + 1];
  if (process.env[envName] !== undefined) return process.env[envName];
  if (fallback !== undefined) return fallback;
  console.error(`oidc_provider.mjs: missing --${name} (or ${envName})`);
  process.exit(2);
}

const port = Number(arg('port', 'OIDC_PORT', '0'));
const clientId = arg('client-id', 'OIDC_CLIENT_ID');
const clientSecret = arg('client-secret', 'OIDC_CLIENT_SECRET');
const redirectUri = arg('redirect-uri', 'OIDC_REDIRECT_URI');
const accounts = JSON.parse(arg('accounts', 'OIDC_ACCOUNTS', '{}'));

async function newRsaKey(kid) {
  const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
  const jwk = await jose.exportJWK(privateKey);
  return { ...jwk, kid, alg: 'RS256', use: 'sig' };
}
const publicPart = ({ d, p, q, dp, dq, qi, ...pub }) => pub;

// The provider's own key: generated here so that this script can re-sign forged tokens with it.
const providerKey = await newRsaKey(`peer-${randomUUID().slice(0, 8)}`);
let signingKey = providerKey;
const rotatedPublicKeys = [];

const state = {
  next: null, // { fault, claims } for the next token response
  issuerMode: 'exact',
  jwksRequests: 0,
  tokenRequests: 0,
};

const server = http.createServer();
await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
const actualPort = server.address().port;
const issuer = `http://127.0.0.1:${actualPort}`;

const claimNames = ['oid', 'tid', 'preferred_username', 'name', 'email'];
const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [providerKey] },
  cookies: { keys: ['roster-oidc-peer-cookie-key'] },
  pkce: { required: () => true },
  conformIdTokenClaims: false,
  claims: { openid: ['sub'], profile: ['name', 'preferred_username', 'oid', 'tid'], email: ['email'] },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const account = accounts[id];
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        const out = { sub: id };
        for (const name of claimNames) if (account[name] !== undefined) out[name] = account[name];
        return { ...account, ...out };
      },
    };
  },
});

const enc = new TextEncoder();
const b64json = (obj) => jose.base64url.encode(enc.encode(JSON.stringify(obj)));
const decodePart = (part) => JSON.parse(new TextDecoder().decode(jose.base64url.decode(part)));

async function signRs256(header, payload, jwk) {
  const key = await jose.importJWK(jwk, 'RS256');
  return new jose.CompactSign(enc.encode(JSON.stringify(payload)))
    .setProtectedHeader({ ...header, alg: 'RS256', kid: jwk.kid })
    .sign(key);
}

// Rewrites the ID token of one token response according to the switches.
async function rewriteIdToken(idToken) {
  const [h, p] = idToken.split('.');
  const header = decodePart(h);
  const payload = decodePart(p);
  const next = state.next;
  state.next = null;
  let changed = false;
  const now = Math.floor(Date.now() / 1000);

  if (state.issuerMode === 'tenant') {
    payload.iss = `${issuer}/${payload.tid}/v2.0`;
    changed = true;
  }
  if (signingKey !== providerKey) changed = true;
  if (next?.claims) {
    for (const [name, value] of Object.entries(next.claims)) {
      if (value === null) delete payload[name]; else payload[name] = value;
    }
    changed = true;
  }
  switch (next?.fault) {
    case undefined:
    case null:
      break;
    case 'alg_none': {
      const { kid, ...rest } = header;
      return `${b64json({ ...rest, alg: 'none' })}.${b64json(payload)}.`;
    }
    case 'hs256_client_secret': {
      const { kid, ...rest } = header;
      return new jose.CompactSign(enc.encode(JSON.stringify(payload)))
        .setProtectedHeader({ ...rest, alg: 'HS256' })
        .sign(enc.encode(clientSecret));
    }
    case 'wrong_aud': payload.aud = 'another-application'; changed = true; break;
    case 'wrong_iss': payload.iss = 'https://attacker.example/v2.0'; changed = true; break;
    case 'expired': payload.iat = now - 7200; payload.exp = now - 3600; changed = true; break;
    case 'iat_future': payload.iat = now + 3600; payload.exp = now + 7200; changed = true; break;
    case 'nbf_future': payload.nbf = now + 3600; changed = true; break;
    case 'wrong_nonce': payload.nonce = 'not-the-nonce-you-sent'; changed = true; break;
    case 'unknown_kid':
      return signRs256(header, payload, await newRsaKey(`unknown-${randomUUID().slice(0, 8)}`));
    case 'wrong_key_same_kid':
      return signRs256(header, payload, await newRsaKey(signingKey.kid));
    default:
      throw new Error(`unknown fault ${next.fault}`);
  }
  return changed ? signRs256(header, payload, signingKey) : idToken;
}

provider.use(async (ctx, next) => {
  if (ctx.path === '/jwks') state.jwksRequests += 1;
  if (ctx.path === '/token') state.tokenRequests += 1;
  await next();
  if (ctx.method === 'POST' && ctx.path === '/token' && ctx.status === 200 && ctx.body?.id_token) {
    ctx.body = { ...ctx.body, id_token: await rewriteIdToken(ctx.body.id_token) };
  }
  if (ctx.path === '/jwks' && ctx.status === 200 && rotatedPublicKeys.length > 0) {
    const body = typeof ctx.body === 'string' ? JSON.parse(ctx.body) : ctx.body;
    ctx.body = { keys: [...body.keys, ...rotatedPublicKeys] };
  }
  const location = ctx.response.get('Location');
  if (state.issuerMode === 'tenant' && location && location.startsWith(redirectUri)) {
    const url = new URL(location);
    url.searchParams.delete('iss');
    ctx.set('Location', url.toString());
  }
});

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : {};
}

function sendJson(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

const knownFaults = new Set(['alg_none', 'hs256_client_secret', 'wrong_aud', 'wrong_iss', 'expired',
  'iat_future', 'nbf_future', 'wrong_nonce', 'unknown_kid', 'wrong_key_same_kid']);

async function control(req, res) {
  if (req.method === 'POST') {
    const body = await readJson(req);
    if (body.reset) {
      state.next = null;
      state.issuerMode = 'exact';
    }
    if (body.fault !== undefined && body.fault !== null && !knownFaults.has(body.fault)) {
      return sendJson(res, 400, { error: `unknown fault ${body.fault}` });
    }
    if (body.fault || body.claims) state.next = { fault: body.fault ?? null, claims: body.claims ?? null };
    if (body.rotate_key) {
      signingKey = await newRsaKey(`rotated-${randomUUID().slice(0, 8)}`);
      rotatedPublicKeys.push(publicPart(signingKey));
    }
    if (body.issuer_mode) state.issuerMode = body.issuer_mode;
  }
  return sendJson(res, 200, {
    next: state.next,
    issuer_mode: state.issuerMode,
    kid: signingKey.kid,
    jwks_requests: state.jwksRequests,
    token_requests: state.tokenRequests,
  });
}

async function commonDiscovery(res) {
  const upstream = await fetch(`${issuer}/.well-known/openid-configuration`);
  const doc = await upstream.json();
  // Like Entra's common endpoint: a template issuer, and no RFC 9207 `iss` in callbacks.
  sendJson(res, 200, {
    ...doc,
    issuer: `${issuer}/{tenantid}/v2.0`,
    authorization_response_iss_parameter_supported: false,
  });
}

const providerCallback = provider.callback();
server.on('request', (req, res) => {
  const path = new URL(req.url, issuer).pathname;
  const fail = (err) => sendJson(res, 500, { error: String(err?.stack ?? err) });
  if (path === '/__control') return control(req, res).catch(fail);
  if (path === '/common/v2.0/.well-known/openid-configuration') return commonDiscovery(res).catch(fail);
  return providerCallback(req, res);
});

process.on('SIGTERM', () => process.exit(0));
console.log(`READY port=${actualPort} issuer=${issuer}`);
