// An admin writes ${userUPN} and ${costCenter} into a Wi-Fi and an Exchange configuration (fixing an unknown
// variable on the way), previews each for a user, and downloads valid profiles.
// Usage: node configurations.mjs BASE_URL UPN_WITH_COST_CENTER UPN_WITHOUT_COST_CENTER
import fs from 'node:fs';
import { launch, shot, check } from './lib.mjs';

const [base, upnWith, upnWithout] = process.argv.slice(2);
const { browser, page } = await launch();

async function download() {
  const [dl] = await Promise.all([page.waitForEvent('download'), page.getByTestId('download').click()]);
  const file = await dl.path();
  return { name: dl.suggestedFilename(), text: fs.readFileSync(file, 'utf8') };
}

try {
  await page.goto(`${base}/login`);
  await page.getByLabel('Username').fill('alice');
  await page.getByLabel('Password').fill('correct-horse-battery');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${base}/admin`);

  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Configurations' }).click();
  await page.waitForURL(`${base}/admin/configurations`);
  check(await page.getByTestId('empty-state').isVisible(), 'empty state first');

  // Wi-Fi, with a typo in a variable first.
  await page.getByRole('link', { name: 'New Wi-Fi' }).click();
  await page.getByLabel('Configuration name').fill('Corp Wi-Fi');
  await page.getByLabel('Network name (SSID)').fill('Contoso-Corp');
  await page.getByLabel('Security', { exact: true }).selectOption('enterprise');
  await page.getByLabel('Encryption', { exact: true }).selectOption({ label: 'WPA3' });
  await page.getByLabel('User name', { exact: true }).fill('${userUPN}');
  await page.getByLabel('Outer identity').fill('${costCentre}');
  await page.getByRole('button', { name: 'Save' }).click();
  const err = await page.getByTestId('error-outer_identity').innerText();
  check(err.includes('${costCentre}') && err.includes('position 1'), `unknown variable named at the field: ${err}`);
  check((await page.getByLabel('Configuration name').inputValue()) === 'Corp Wi-Fi', 'input kept');
  await shot(page, 'configurations-wifi-unknown-variable');
  await page.getByLabel('Outer identity').fill('${costCenter}');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.waitForURL(/\/admin\/configurations\/[0-9a-f-]{36}$/);
  check((await page.getByTestId('flash').innerText()).includes('created'), 'created flash');
  const costItem = page.locator('[data-test="coverage-item"][data-variable="${costCenter}"]');
  check(Number(await costItem.getAttribute('data-missing')) > 0, 'users lacking costCenter are counted');
  check((await costItem.getByTestId('missing-link').getAttribute('href')) === '/admin/users?missing=costCenter', 'link to them');
  await shot(page, 'configurations-wifi-saved');

  // Preview for a user with a cost center, then download the profile.
  await page.getByLabel('User (UPN, email or id)').fill(upnWith);
  await page.getByRole('button', { name: 'Preview' }).click();
  await page.waitForURL(/\/preview\?user=/);
  check(await page.getByTestId('all-values').isVisible(), 'every value present');
  check((await page.getByTestId('resolved-fields').innerText()).includes(upnWith), 'UPN resolved');
  await shot(page, 'configurations-wifi-preview');
  const wifi = await download();
  check(wifi.name.endsWith('.mobileconfig'), `profile file name ${wifi.name}`);
  check(wifi.text.startsWith('<?xml') && wifi.text.includes('<string>com.apple.wifi.managed</string>'), 'a Wi-Fi profile');
  check(wifi.text.includes(`<string>${upnWith}</string>`), 'the user name is resolved in the profile');
  check(!wifi.text.includes('${'), 'no variable left in the profile');

  // Exchange: a user without a cost center gets a warning, and still a profile.
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Configurations' }).click();
  await page.getByRole('link', { name: 'New Exchange ActiveSync' }).click();
  await page.getByLabel('Configuration name').fill('Contoso Mail');
  await page.getByLabel('Account name').fill('Mail ${costCenter}');
  await page.getByLabel('Exchange server').fill('outlook.office365.com');
  check((await page.getByLabel('User name', { exact: true }).inputValue()) === '${userUPN}', 'user name defaults to ${userUPN}');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.waitForURL(/\/admin\/configurations\/[0-9a-f-]{36}$/);
  await page.getByLabel('User (UPN, email or id)').fill(upnWithout);
  await page.getByRole('button', { name: 'Preview' }).click();
  await page.waitForURL(/\/preview\?user=/);
  check((await page.getByTestId('missing-values').innerText()).includes('${costCenter}'), 'warns about the missing value');
  await shot(page, 'configurations-exchange-preview-missing');
  const eas = await download();
  check(eas.text.includes('<string>com.apple.eas.account</string>') && eas.text.includes(`<string>${upnWithout}</string>`), 'an Exchange profile');

  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Configurations' }).click();
  check((await page.getByTestId('configuration-row').count()) === 2, 'both listed');
  await shot(page, 'configurations-list');
  console.log('configurations: ok');
} finally {
  await browser.close();
}
