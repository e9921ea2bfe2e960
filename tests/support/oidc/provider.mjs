// A real OpenID provider for the single sign-on tests: panva's certified oidc-provider
// with one confidential client that must use PKCE. Anyone may sign in with any login
// and password at its development login page; the login is the account's email, always
// verified, so a test picks the address (and thus the domain) by what it types.
//
// Settings come from the environment:
//   OIDC_PORT           the loopback port to listen on
//   OIDC_CLIENT_ID      the client's id
//   OIDC_CLIENT_SECRET  the client's secret
//   OIDC_REDIRECT_URI   the one redirect URI the client may use
// It prints "listening <issuer>" once it accepts connections.
import { generateKeyPairSync, randomBytes } from 'node:crypto';

import Provider from 'oidc-provider';

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} must be set`);
    process.exit(2);
  }
  return value;
}

const port = Number(required('OIDC_PORT'));
const clientId = required('OIDC_CLIENT_ID');
const issuer = `http://127.0.0.1:${port}`;

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), alg: 'RS256', use: 'sig', kid: 'test-rs256' };

const provider = new Provider(issuer, {
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  clients: [{
    client_id: clientId,
    client_secret: required('OIDC_CLIENT_SECRET'),
    redirect_uris: [required('OIDC_REDIRECT_URI')],
    grant_types: ['authorization_code'],
    response_types: ['code'],
  }],
  jwks: { keys: [signingKey] },
  pkce: { required: () => true },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  // Put the email in the ID token itself, as Keycloak and Authentik do by default.
  conformIdTokenClaims: false,
  async findAccount(ctx, accountId) {
    return {
      accountId,
      async claims() {
        return { sub: accountId, email: accountId, email_verified: true, name: accountId };
      },
    };
  },
  // The client is first-party: grant what it asks without a consent screen.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) {
      return ctx.oidc.provider.Grant.find(grantId);
    }
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid email profile');
    await grant.save();
    return grant;
  },
});

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
