// An invited user follows the link from their email in Chromium, signs in at the IdP (SAML or OpenID Connect)
// and sees their enrollment details (server, username, PIN, QR code).
// Usage: node registration.mjs LINK IDP_USER saml|oidc SHOT_PREFIX
import { launch, shot, check, oidcLogin } from './lib.mjs';

const [link, idpUser, protocol, prefix] = process.argv.slice(2);
const { browser, page } = await launch();
try {
  await page.goto(link);
  check(await page.getByTestId('invitee-name').isVisible(), 'the page says who it is for');
  await shot(page, `${prefix}-landing`);
  await page.getByTestId('continue').click();
  if (protocol === 'oidc') {
    await oidcLogin(page, new URL(link).origin, idpUser);
  } else {
    await page.locator('#username').fill(idpUser);
    await page.locator('#signin').click();
  }
  await page.getByTestId('enrolled').waitFor();
  const pin = await page.getByTestId('enroll-pin').innerText();
  check(/^[0-9]{6,12}$/.test(pin.trim()), `a PIN is shown (${pin})`);
  check((await page.locator('[data-test="enroll-qr"] svg').count()) === 1, 'a QR code is shown');
  await shot(page, `${prefix}-enrolled`);
  await page.goto(link);
  check((await page.getByTestId('registration-problem').getAttribute('data-kind')) === 'used', 'the link works once');
  await shot(page, `${prefix}-used`);
} finally {
  await browser.close();
}
