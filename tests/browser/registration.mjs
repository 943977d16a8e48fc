// An invited user follows the link from their email in Chromium, signs in at the SAML IdP and sees their
// enrollment details (server, username, PIN, QR code).
// Usage: node registration.mjs LINK IDP_USER
import { launch, shot, check } from './lib.mjs';

const [link, idpUser] = process.argv.slice(2);
const { browser, page } = await launch();
try {
  await page.goto(link);
  check(await page.getByTestId('invitee-name').isVisible(), 'the page says who it is for');
  await shot(page, 'registration-landing');
  await page.getByTestId('continue').click();
  await page.locator('#username').fill(idpUser);
  await page.locator('#signin').click();
  await page.getByTestId('enrolled').waitFor();
  const pin = await page.getByTestId('enroll-pin').innerText();
  check(/^[0-9]{6,12}$/.test(pin.trim()), `a PIN is shown (${pin})`);
  check((await page.locator('[data-test="enroll-qr"] svg').count()) === 1, 'a QR code is shown');
  await shot(page, 'registration-enrolled');
  await page.goto(link);
  check((await page.getByTestId('registration-problem').getAttribute('data-kind')) === 'used', 'the link works once');
  await shot(page, 'registration-used');
} finally {
  await browser.close();
}
