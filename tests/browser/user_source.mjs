// An admin fills Admin > Microsoft Azure > Entra ID User Source by its labels, tests the connection,
// saves, starts a sync and sees the users. Usage: node user_source.mjs BASE_URL EMULATOR_URL TENANT CLIENT SECRET USERS
import { launch, shot, check } from './lib.mjs';

const [base, emulator, tenant, client, secret, users] = process.argv.slice(2);
const { browser, page } = await launch();
try {
  await page.goto(`${base}/login`);
  await page.getByLabel('Username').fill('alice');
  await page.getByLabel('Password').fill('correct-horse-battery');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${base}/admin`);

  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Entra ID User Source' }).click();
  await page.waitForURL(`${base}/admin/azure/entra-user-source`);
  await page.getByLabel('Entra ID Name').fill('Contoso');
  await page.getByLabel('Sync Interval').selectOption({ label: '24 h' });
  await page.getByLabel('Enable this Entra ID').check();
  await page.getByLabel('Directory (tenant) ID').fill(tenant);
  await page.getByLabel('Application (client) ID').fill(client);
  await page.getByLabel('Client secret').fill(secret);
  await page.getByLabel('Cloud').selectOption({ label: 'Custom' });
  await page.getByLabel('Authority URL').fill(emulator);
  await page.getByLabel('Graph URL').fill(emulator);
  await page.getByLabel('Pattern', { exact: true }).check();
  await page.getByLabel('Pattern source').selectOption({ label: 'User email address' });
  await page.getByLabel('Include "appleid" subdomain').check();
  await page.getByLabel('Variable name 1').fill('badge');
  await page.getByLabel('Entra ID property 1').fill('onPremisesExtensionAttributes.extensionAttribute7');
  await page.getByRole('button', { name: 'Test connection' }).click();
  const result = page.getByTestId('test-result');
  check((await result.getAttribute('data-ok')) === 'true', `test connection: ${await result.innerText()}`);
  check((await result.innerText()).includes('users on the first page'), 'user count reported');
  await shot(page, 'user-source-tested');

  // The secret is never shown back: type it again to save, as the page asks.
  await page.getByLabel('Client secret').fill(secret);
  await page.getByRole('button', { name: 'Save' }).click();
  await page.waitForURL(`${base}/admin/azure/entra-user-source`);
  check((await page.getByTestId('flash').innerText()).includes('saved'), 'saved');
  check((await page.getByLabel('Client secret').inputValue()) === '', 'secret field stays empty');

  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Sync' }).click();
  await page.waitForURL(`${base}/admin/sync`);
  // The first round starts by itself (never synced); wait for it to succeed.
  await page.waitForSelector('[data-test="run-row"][data-status="succeeded"]', { timeout: 60000 });
  await page.goto(`${base}/admin/sync`);
  await shot(page, 'sync-finished');

  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Users' }).click();
  await page.waitForURL(`${base}/admin/users`);
  const mainText = await page.locator('main').innerText();
  check(mainText.includes(`${users} users in the directory`), `users imported: ${mainText.slice(0, 200)}`);
  check((await page.getByTestId('user-row').count()) === 50, 'first page of 50');
  await shot(page, 'users');
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Groups' }).click();
  check((await page.getByTestId('group-row').count()) > 0, 'groups imported');
  await shot(page, 'groups');
  console.log('user_source: ok');
} finally {
  await browser.close();
}
