// Test-only OpenID provider for Bulwark's SSO tests: the npm package oidc-provider (certified) run on
// loopback with three issuers in one process, each with its own discovery document, JWKS, clients
// and users. Started by tests/oidc_harness.py, which documents the protocol; never deploy this.
//
//   /google/...                 Google-like issuer  (email, email_verified)
//   /oidc/...                   generic OIDC issuer (email, email_verified, preferred_username)
//   /azure/{tenant}/v2.0/...    Azure-like (Entra ID v2.0) authority; {tenant} is a tenant id,
//                               `common` or `organizations`; id_tokens carry iss {authority}/{tid}/v2.0
//   /interaction/{profile}/{uid}           login and consent forms (plain HTML)
//   /_control/...                          test control endpoints (JSON, loopback only)
//
// One Provider instance per profile. Static clients and signing keys are configuration of
// oidc-provider, so adding a client or rotating keys builds a fresh Provider instance for that
// profile from the new configuration; grants, sessions and codes live in oidc-provider's in-memory
// adapter, which is shared by all instances of the process, so flows in flight survive a rebuild.

import { randomUUID, generateKeyPairSync, createPrivateKey } from 'node:crypto';
import { createServer } from 'node:http';

import * as jose from 'jose';
import Provider, { interactionPolicy } from 'oidc-provider';

// oidc-provider prints development warnings with console.log; stdout carries only the readiness line.
console.log = console.error;

const HOST = '127.0.0.1';
const port = Number(process.argv[2] || 0);
const COOKIE_KEYS = [randomUUID(), randomUUID()];
const DEFAULT_TENANT = '11111111-1111-4111-8111-111111111111';
const AZURE_META_TENANTS = new Set(['common', 'organizations']);

// Claims each profile releases, per scope (oidc-provider's `claims` configuration).
const PROFILE_CLAIMS = {
  google: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'given_name', 'family_name', 'picture', 'locale'],
    hd: null,
  },
  oidc: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
  },
  // Entra ID v2.0: tid always; oid, preferred_username and name with `profile`; email (an optional
  // claim, NOT verified by Microsoft) and xms_edov (optional claim: "email domain owner verified")
  // with `email`. There is no email_verified claim at all.
  azure: {
    openid: ['sub', 'tid', 'ver'],
    email: ['email', 'xms_edov'],
    profile: ['oid', 'preferred_username', 'name'],
  },
};

let baseUrl; // http://127.0.0.1:{port}, known once listening
const profiles = {}; // name -> state
let keyCounter = 0;

function newSigningKey(profile) {
  keyCounter += 1;
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: `${profile}-key-${keyCounter}-${randomUUID().slice(0, 8)}`, use: 'sig', alg: 'RS256' };
}

function issuerFor(name) {
  if (name === 'azure') return `${baseUrl}/azure/common/v2.0`; // nominal; see azureIssuer()
  return `${baseUrl}/${name}`;
}

function azureIssuer(tid) {
  return `${baseUrl}/azure/${tid}/v2.0`;
}

function publicIssuer(name) {
  return name === 'azure' ? azureIssuer(DEFAULT_TENANT) : issuerFor(name);
}

function initProfile(name) {
  profiles[name] = {
    name,
    keys: [newSigningKey(name)], // first key signs
    clients: new Map(), // client_id -> metadata
    users: new Map(), // login -> user
    tamper: [], // queued one-shot id_token tampering for the next token responses
    authzIssTamper: null, // one-shot: replace the RFC 9207 iss of the next authorization response
    provider: null,
  };
  build(profiles[name]);
}

// Every authorization request asks for a login, even with a provider session from an earlier flow:
// a test signing in as another user through the same httpx client gets that user, not the last one.
function freshLoginPolicy() {
  const policy = interactionPolicy.base();
  policy.get('login').checks.add(
    new interactionPolicy.Check('fresh_login', 'each flow signs in afresh', (ctx) =>
      ctx.oidc.result?.login ? interactionPolicy.Check.NO_NEED_TO_PROMPT : interactionPolicy.Check.REQUEST_PROMPT,
    ),
  );
  return policy;
}

function findUserBySub(state, sub) {
  for (const user of state.users.values()) if (user.sub === sub) return user;
  return undefined;
}

function build(state) {
  const { name } = state;
  const provider = new Provider(issuerFor(name), {
    clients: [...state.clients.values()],
    jwks: { keys: state.keys },
    cookies: { keys: COOKIE_KEYS },
    // amr/acr come from the login (the user's `amr`), released with `openid` whatever else.
    claims: { ...PROFILE_CLAIMS[name], openid: [...PROFILE_CLAIMS[name].openid, 'amr', 'acr'] },
    // Google and Entra ID put the scope's claims in the id_token even when an access token is issued.
    conformIdTokenClaims: false,
    features: {
      devInteractions: { enabled: false },
      userinfo: { enabled: true },
      rpInitiatedLogout: { enabled: false },
    },
    // Bulwark always sends S256; requiring it makes a flow without PKCE fail loudly here.
    pkce: { required: () => true },
    responseTypes: ['code'],
    clientDefaults: {
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'RS256',
    },
    ttl: { IdToken: 3600, AccessToken: 3600, AuthorizationCode: 60, Interaction: 600, Session: 3600, Grant: 3600 },
    interactions: {
      policy: freshLoginPolicy(),
      url: (_ctx, interaction) => `/interaction/${name}/${interaction.uid}`,
    },
    findAccount: (_ctx, sub) => {
      const user = findUserBySub(state, sub);
      if (!user) return undefined;
      return { accountId: sub, claims: () => ({ ...user.claims, sub }) };
    },
    renderError: (ctx, out) => {
      ctx.type = 'html';
      ctx.body = `<!doctype html><title>error</title><h1>${escapeHtml(out.error)}</h1><p>${escapeHtml(out.error_description || '')}</p>`;
    },
  });
  provider.on('server_error', (_ctx, err) => console.error('server_error', err));
  provider.use(rewriteResponses(state));
  state.provider = provider;
}

// --- response rewriting: Azure issuer per tid, RFC 9207 iss, tamper modes -----------------------

function azureTenantSegment(ctx) {
  const match = /^\/azure\/([^/]+)\/v2\.0(\/|$)/.exec(ctx.req.originalUrl || '');
  return match ? match[1] : undefined;
}

function rewriteResponses(state) {
  return async (ctx, next) => {
    await next();
    const route = ctx.oidc?.route;
    if (route === 'discovery') {
      rewriteDiscovery(state, ctx);
    } else if (route === 'token' && ctx.body && typeof ctx.body.id_token === 'string') {
      ctx.body = { ...ctx.body, id_token: await rewriteIdToken(state, ctx.body.id_token) };
    } else if ((route === 'authorization' || route === 'resume') && ctx.status >= 300 && ctx.status < 400) {
      rewriteAuthorizationRedirect(state, ctx);
    }
  };
}

function rewriteDiscovery(state, ctx) {
  if (state.name !== 'azure') return;
  const tenant = azureTenantSegment(ctx);
  const body = { ...ctx.body };
  // Entra ID: a tenant's document names the tenant; /common and /organizations publish a template
  // that clients fill from the token's tid. It does not send RFC 9207 iss.
  body.issuer = AZURE_META_TENANTS.has(tenant) ? `${baseUrl}/azure/{tenantid}/v2.0` : azureIssuer(tenant);
  delete body.authorization_response_iss_parameter_supported;
  ctx.body = body;
}

function rewriteAuthorizationRedirect(state, ctx) {
  const location = ctx.response.get('Location');
  if (!location) return;
  const url = new URL(location, baseUrl);
  if (!url.searchParams.has('iss')) return;
  if (state.name === 'azure') url.searchParams.delete('iss');
  if (state.authzIssTamper !== null) {
    url.searchParams.set('iss', state.authzIssTamper);
    state.authzIssTamper = null;
  }
  ctx.redirect(url.href);
}

async function rewriteIdToken(state, idToken) {
  const tamper = state.tamper.shift();
  if (state.name !== 'azure' && !tamper) return idToken;
  const header = jose.decodeProtectedHeader(idToken);
  const payload = jose.decodeJwt(idToken);
  if (state.name === 'azure') payload.iss = azureIssuer(payload.tid || DEFAULT_TENANT);
  if (tamper) applyTamper(state, payload, tamper);
  const signer = tamper?.mode === 'foreign_key' ? newSigningKey(`${state.name}-foreign`) : state.keys[0];
  const key = createPrivateKey({ key: signer, format: 'jwk' });
  return new jose.CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
    .setProtectedHeader({ ...header, kid: signer.kid })
    .sign(key);
}

const TAMPER_MODES = new Set(['aud', 'nonce', 'expired', 'issuer', 'foreign_key', 'claims']);

function applyTamper(state, payload, tamper) {
  const now = Math.floor(Date.now() / 1000);
  switch (tamper.mode) {
    case 'aud':
      payload.aud = tamper.value ?? 'another-client';
      if (payload.azp !== undefined) payload.azp = payload.aud;
      break;
    case 'nonce':
      payload.nonce = tamper.value ?? `foreign-${randomUUID()}`;
      break;
    case 'expired':
      payload.iat = now - 7200;
      payload.exp = now - (tamper.value ?? 3600);
      if (payload.auth_time !== undefined) payload.auth_time = payload.iat;
      break;
    case 'issuer':
      payload.iss = tamper.value ?? publicIssuer(state.name === 'google' ? 'oidc' : 'google');
      break;
    case 'foreign_key':
      break; // signed below with a key this issuer never published, same header otherwise
    case 'claims':
      Object.assign(payload, tamper.value || {});
      break;
    default:
      throw new Error(`unknown tamper mode ${tamper.mode}`);
  }
}

// --- interactions: login and consent forms ------------------------------------------------------

function escapeHtml(value) {
  return String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title, body) {
  return `<!doctype html><html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head><body>${body}</body></html>`;
}

function loginForm(profile, uid, params, error) {
  return page(
    'Sign in',
    `<h1>Sign in to ${escapeHtml(profile)}</h1>
<p>client: ${escapeHtml(params.client_id)}</p>
${error ? `<p class="error" id="error">${escapeHtml(error)}</p>` : ''}
<form id="login" method="post" action="/interaction/${profile}/${uid}/login">
<input name="login" autocomplete="username"><input name="password" type="password">
<button type="submit">Sign in</button></form>
<form id="abort" method="post" action="/interaction/${profile}/${uid}/abort"><button type="submit">Cancel</button></form>`,
  );
}

function consentForm(profile, uid, params, details) {
  const scopes = (details.missingOIDCScope || []).join(' ');
  return page(
    'Consent',
    `<h1>Allow ${escapeHtml(params.client_id)}?</h1><p>scopes: ${escapeHtml(scopes)}</p>
<form id="consent" method="post" action="/interaction/${profile}/${uid}/confirm">
<button type="submit">Allow</button></form>
<form id="abort" method="post" action="/interaction/${profile}/${uid}/abort"><button type="submit">Deny</button></form>`,
  );
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

function send(res, status, type, body) {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

function sendJson(res, status, body) {
  send(res, status, 'application/json', JSON.stringify(body));
}

// The tenant segment the authorization request came through (Entra ID refuses a user of another
// tenant at a tenant-specific authority; /common and /organizations take any tenant).
function requestedAzureTenant(details) {
  const match = /\/azure\/([^/]+)\/v2\.0\//.exec(details.returnTo || '');
  return match ? match[1] : undefined;
}

async function handleInteraction(req, res, profileName, uid, action) {
  const state = profiles[profileName];
  if (!state) return send(res, 404, 'text/plain', 'unknown profile');
  const { provider } = state;
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) return send(res, 400, 'text/plain', 'interaction mismatch');
  const { prompt, params } = details;

  if (req.method === 'GET' && !action) {
    const html = prompt.name === 'login' ? loginForm(profileName, uid, params) : consentForm(profileName, uid, params, prompt.details);
    return send(res, 200, 'text/html; charset=utf-8', html);
  }
  if (req.method !== 'POST') return send(res, 405, 'text/plain', 'method not allowed');
  const form = new URLSearchParams(await readBody(req));

  if (action === 'abort') {
    return provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'End-User aborted interaction' }, { mergeWithLastSubmission: false });
  }
  if (action === 'login') {
    if (prompt.name !== 'login') return send(res, 400, 'text/plain', 'not a login prompt');
    const user = state.users.get(form.get('login') || '');
    if (!user || user.password !== form.get('password')) {
      return send(res, 200, 'text/html; charset=utf-8', loginForm(profileName, uid, params, 'Invalid login or password'));
    }
    if (profileName === 'azure') {
      const tenant = requestedAzureTenant(details);
      if (tenant && !AZURE_META_TENANTS.has(tenant) && tenant !== user.claims.tid) {
        return send(res, 200, 'text/html; charset=utf-8', loginForm(profileName, uid, params, `AADSTS50020: user is not in tenant ${tenant}`));
      }
    }
    const login = { accountId: user.sub, ...(user.amr ? { amr: user.amr } : {}), ...(user.acr ? { acr: user.acr } : {}) };
    return provider.interactionFinished(req, res, { login }, { mergeWithLastSubmission: false });
  }
  if (action === 'confirm') {
    if (prompt.name !== 'consent') return send(res, 400, 'text/plain', 'not a consent prompt');
    const { accountId } = details.session;
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId, clientId: params.client_id });
    if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
    if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes || {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    const consent = details.grantId ? {} : { grantId };
    return provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
  }
  return send(res, 404, 'text/plain', 'unknown interaction action');
}

// --- control endpoints (JSON; the server listens on loopback only) ------------------------------

function profileInfo(state) {
  const info = {
    profile: state.name,
    issuer: publicIssuer(state.name),
    discovery_url: `${publicIssuer(state.name)}/.well-known/openid-configuration`,
    kids: state.keys.map((k) => k.kid),
    signing_kid: state.keys[0].kid,
    clients: [...state.clients.keys()],
    users: [...state.users.keys()],
  };
  if (state.name === 'azure') {
    info.authority = `${baseUrl}/azure`;
    info.default_tenant = DEFAULT_TENANT;
  }
  return info;
}

function addClient(state, body) {
  if (!body.client_id || !Array.isArray(body.redirect_uris) || body.redirect_uris.length === 0) {
    throw new Error('client_id and redirect_uris are required');
  }
  const client = {
    client_id: body.client_id,
    client_secret: body.client_secret || `secret-${randomUUID()}`,
    redirect_uris: body.redirect_uris,
    token_endpoint_auth_method: body.token_endpoint_auth_method || 'client_secret_basic',
    grant_types: ['authorization_code'],
    response_types: ['code'],
  };
  state.clients.set(client.client_id, client);
  build(state);
  return client;
}

function addUser(state, body) {
  const claims = { ...(body.claims || {}) };
  const sub = body.sub || claims.sub || randomUUID();
  delete claims.sub;
  if (state.name === 'azure') {
    claims.tid ??= DEFAULT_TENANT;
    claims.oid ??= randomUUID();
    claims.ver ??= '2.0';
  }
  const login = body.login || claims.email || sub;
  const user = { login, password: body.password ?? 'password', sub, claims, amr: body.amr, acr: body.acr };
  state.users.set(login, user);
  return { login, sub, claims, amr: body.amr ?? null };
}

function rotate(state, body) {
  const previous = state.keys[0].kid;
  const fresh = newSigningKey(state.name);
  state.keys = body.keep_old ? [fresh, ...state.keys] : [fresh];
  build(state);
  return { signing_kid: fresh.kid, previous_kid: previous, kids: state.keys.map((k) => k.kid) };
}

function queueTamper(state, body) {
  if (body.mode === 'authz_iss') {
    state.authzIssTamper = body.value ?? publicIssuer(state.name === 'google' ? 'oidc' : 'google');
    return { queued: 'authz_iss', value: state.authzIssTamper };
  }
  if (!TAMPER_MODES.has(body.mode)) throw new Error(`mode must be one of ${[...TAMPER_MODES, 'authz_iss'].join(', ')}`);
  state.tamper.push({ mode: body.mode, value: body.value });
  return { queued: body.mode, pending: state.tamper.length };
}

function reset(state) {
  state.tamper = [];
  state.authzIssTamper = null;
  return profileInfo(state);
}

async function handleControl(req, res, parts) {
  if (!['127.0.0.1', '::1', '::ffff:127.0.0.1'].includes(req.socket.remoteAddress)) {
    return sendJson(res, 403, { error: 'control endpoints answer loopback only' });
  }
  if (parts[0] === 'health') return sendJson(res, 200, { ok: true, profiles: Object.keys(profiles) });
  const state = profiles[parts[0]];
  if (!state) return sendJson(res, 404, { error: `unknown profile ${parts[0]}` });
  const raw = req.method === 'POST' ? await readBody(req) : '';
  try {
    const body = raw ? JSON.parse(raw) : {};
    if (req.method === 'GET' && parts.length === 1) return sendJson(res, 200, profileInfo(state));
    if (req.method !== 'POST') return sendJson(res, 405, { error: 'POST expected' });
    const actions = { clients: addClient, users: addUser, rotate, tamper: queueTamper, reset };
    const action = actions[parts[1]];
    if (!action) return sendJson(res, 404, { error: `unknown control action ${parts[1]}` });
    return sendJson(res, 200, action(state, body));
  } catch (err) {
    return sendJson(res, 400, { error: err.message });
  }
}

// --- dispatch -----------------------------------------------------------------------------------

function mountAndCall(state, req, res, prefix) {
  // oidc-provider derives its endpoint URLs from originalUrl minus url (how Express mounts it).
  req.originalUrl = req.url;
  req.url = req.url.slice(prefix.length) || '/';
  return state.provider.callback()(req, res);
}

async function dispatch(req, res) {
  const path = new URL(req.url, baseUrl).pathname;
  const parts = path.split('/').filter(Boolean);
  if (parts[0] === '_control') return handleControl(req, res, parts.slice(1));
  if (parts[0] === 'interaction' && parts.length >= 3) {
    return handleInteraction(req, res, parts[1], parts[2], parts[3]);
  }
  if ((parts[0] === 'google' || parts[0] === 'oidc') && profiles[parts[0]]) {
    return mountAndCall(profiles[parts[0]], req, res, `/${parts[0]}`);
  }
  if (parts[0] === 'azure' && parts.length >= 3 && parts[2] === 'v2.0') {
    return mountAndCall(profiles.azure, req, res, `/azure/${parts[1]}/v2.0`);
  }
  return send(res, 404, 'text/plain', 'not found');
}

const server = createServer((req, res) => {
  dispatch(req, res).catch((err) => {
    const status = err?.statusCode || 500;
    if (status >= 500) console.error(err);
    if (!res.headersSent) {
      send(res, status, 'text/html; charset=utf-8', page('error', `<h1>${escapeHtml(err?.error || 'server_error')}</h1><p>${escapeHtml(err?.error_description || err?.message || '')}</p>`));
    }
  });
});

server.listen(port, HOST, () => {
  baseUrl = `http://${HOST}:${server.address().port}`;
  for (const name of Object.keys(PROFILE_CLAIMS)) initProfile(name);
  // The harness reads this one line to learn the port; everything else goes to stderr.
  process.stdout.write(`${JSON.stringify({ ready: true, base_url: baseUrl, profiles: Object.keys(profiles) })}\n`);
});

// The harness holds our stdin open; when it dies (even by SIGKILL) stdin closes and we go too.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
