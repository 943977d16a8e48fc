// Admin > Identity as an admin uses it, in Chromium against the real peers: set up the generic SAML IdP from
// its metadata URL, run Test sign-in, enable it; set up Entra ID (OpenID Connect) against oidc-provider and
// run its Test sign-in; sign in to the portal through the SAML IdP; then set up AD FS from an uploaded metadata
// file and sign in through it; then enable Entra ID and sign in through it.
// Usage: node identity.mjs BASE_URL SAML_METADATA_URL OIDC_ISSUER CLIENT_ID CLIENT_SECRET SSO_ADMIN METADATA_FILE
import { launch, shot, check, oidcLogin as peerLogin } from './lib.mjs';

const [base, samlMetadata, oidcIssuer, clientId, clientSecret, ssoAdmin, metadataFile] = process.argv.slice(2);

async function signOutAndBackInWith(label, idpSteps) {
  await page.getByTestId('logout').click();
  await page.waitForURL(/\/login/);
  check((await page.getByTestId('sso-start').innerText()).includes(label), `the sign-in page offers ${label}`);
  await page.getByTestId('sso-start').click();
  await idpSteps();
  await page.waitForURL(`${base}/admin`);
  check((await page.getByTestId('signed-in-admin').innerText()).includes(ssoAdmin), `signed in through ${label}`);
}

async function samlLogin() {
  await page.locator('#username').fill('alice');
  await page.locator('#signin').click();
}

async function oidcLogin() {
  await peerLogin(page, base, 'alice');
}
const { browser, page } = await launch();
try {
  await page.goto(`${base}/login`);
  await page.getByLabel('Username').fill('alice');
  await page.getByLabel('Password').fill('correct-horse-battery');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${base}/admin`);
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Identity Providers' }).click();
  await page.waitForURL(`${base}/admin/identity`);
  check(await page.getByTestId('no-active-idp').isVisible(), 'no IdP is active at first');
  await shot(page, 'identity-overview-empty');

  // Generic SAML 2.0 IdP from its metadata URL.
  await page.getByTestId('setup-generic').click();
  await page.getByLabel('Metadata URL').fill(samlMetadata);
  await page.getByLabel('Use for admin portal sign-in').check();
  await page.getByTestId('save').click();
  await page.waitForURL(`${base}/admin/identity/generic`);
  check((await page.getByTestId('certificate-row').count()) === 1, 'the signing certificate from the metadata is trusted');
  await shot(page, 'identity-generic-saved');
  await page.getByTestId('test-sign-in').click();
  await page.locator('#username').fill('alice');
  await page.locator('#signin').click();
  await page.waitForURL(/\/admin\/identity\/test-results\//);
  check((await page.getByTestId('test-result').getAttribute('data-ok')) === 'true', 'SAML test sign-in accepted');
  check(await page.getByTestId('matched-user').isVisible(), 'the matched directory user is shown');
  await shot(page, 'identity-saml-test-result');
  await page.goto(`${base}/admin/identity/generic`);
  await page.getByTestId('enable-idp').click();
  await page.waitForURL(`${base}/admin/identity/generic`);
  check(await page.getByTestId('idp-enabled').isVisible(), 'enabled');

  // Entra ID over OpenID Connect against oidc-provider (custom issuer), tested before it could be enabled.
  await page.goto(`${base}/admin/identity/entra`);
  await page.getByLabel('Cloud').selectOption('custom');
  await page.getByLabel('Issuer URL (Custom only)').fill(oidcIssuer);
  await page.getByLabel('Application (client) ID').fill(clientId);
  await page.getByLabel('Client secret').fill(clientSecret);
  await page.getByTestId('save').click();
  await page.waitForURL(`${base}/admin/identity/entra`);
  check((await page.getByTestId('secret-state').innerText()).includes('A secret is stored'), 'secret stored, not shown');
  await shot(page, 'identity-entra-saved');
  await page.getByTestId('enable-idp').click();
  await page.waitForURL(`${base}/admin/identity/entra`);
  check((await page.locator('.flash-error').innerText()).includes('disable Generic SAML 2.0 IdP first'), 'one IdP at a time');
  await shot(page, 'identity-one-idp-rule');
  await page.getByTestId('test-sign-in').click();
  await oidcLogin();
  await page.waitForURL(/\/admin\/identity\/test-results\//);
  check((await page.getByTestId('test-result').getAttribute('data-ok')) === 'true', 'OIDC test sign-in accepted');
  check((await page.getByTestId('claims').innerText()).includes('preferred_username'), 'claims listed');
  await shot(page, 'identity-oidc-test-result');

  // Sign out, then into the portal through the SAML IdP.
  await page.getByTestId('logout').click();
  await page.waitForURL(/\/login/);
  await page.getByTestId('sso-start').click();
  await page.locator('#username').fill('alice');
  await shot(page, 'identity-saml-idp-login');
  await page.locator('#signin').click();
  await page.waitForURL(`${base}/admin`);
  check((await page.getByTestId('signed-in-admin').innerText()).includes(ssoAdmin), 'signed in as the SSO admin');
  await page.goto(`${base}/admin/identity`);
  await shot(page, 'identity-overview');

  // AD FS from an uploaded metadata file.
  await page.goto(`${base}/admin/identity/generic`);
  await page.getByTestId('disable-idp').click();
  await page.waitForURL(`${base}/admin/identity/generic`);
  await page.goto(`${base}/admin/identity/onprem`);
  await page.getByLabel('Upload metadata file').setInputFiles(metadataFile);
  await page.waitForFunction(() => document.getElementById('f-metadata_xml').value.includes('EntityDescriptor'));
  await page.getByLabel('Use for admin portal sign-in').check();
  await page.getByTestId('save').click();
  await page.waitForURL(`${base}/admin/identity/onprem`);
  check((await page.getByTestId('certificate-row').count()) === 1, 'AD FS certificate from the uploaded metadata');
  await page.getByTestId('test-sign-in').click();
  await samlLogin();
  await page.waitForURL(/\/admin\/identity\/test-results\//);
  check((await page.getByTestId('test-result').getAttribute('data-ok')) === 'true', 'AD FS test sign-in accepted');
  await page.goto(`${base}/admin/identity/onprem`);
  await page.getByTestId('enable-idp').click();
  await page.waitForURL(`${base}/admin/identity/onprem`);
  await shot(page, 'identity-adfs-enabled');
  await signOutAndBackInWith('AD FS', samlLogin);

  // Entra ID (OpenID Connect) for admin sign-in.
  await page.goto(`${base}/admin/identity/onprem`);
  await page.getByTestId('disable-idp').click();
  await page.waitForURL(`${base}/admin/identity/onprem`);
  await page.goto(`${base}/admin/identity/entra`);
  await page.getByLabel('Use for admin portal sign-in').check();
  await page.getByTestId('save').click();
  await page.waitForURL(`${base}/admin/identity/entra`);
  await page.getByTestId('enable-idp').click();
  await page.waitForURL(`${base}/admin/identity/entra`);
  check(await page.getByTestId('idp-enabled').isVisible(), 'Entra ID enabled');
  await signOutAndBackInWith('Entra ID', oidcLogin);
} finally {
  await browser.close();
}
