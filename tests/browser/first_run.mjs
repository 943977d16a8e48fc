// First-run setup, sign-out, a failed and a good sign-in, and the audit page, as a person would click.
// Usage: node first_run.mjs BASE_URL SETUP_LINK
import { launch, shot, check } from './lib.mjs';

const [base, setupLink] = process.argv.slice(2);
const { browser, page } = await launch();
try {
  await page.goto(setupLink);
  await shot(page, 'first-run-setup');
  await page.getByLabel('Username').fill('alice');
  await page.getByLabel('Password', { exact: true }).fill('correct-horse-battery');
  await page.getByLabel('Confirm password').fill('correct-horse-battery');
  await page.getByRole('button', { name: 'Create admin account' }).click();
  await page.waitForURL(`${base}/admin`);
  await shot(page, 'first-run-dashboard');
  check((await page.getByTestId('flash').innerText()).includes('Welcome, alice'), 'welcome message');
  check((await page.getByTestId('signed-in-admin').innerText()).includes('alice'), 'header shows the admin');
  await shot(page, 'first-run-dashboard');

  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(`${base}/login?signed_out=1`);
  check(await page.getByTestId('signed-out').isVisible(), 'signed-out notice');

  await page.getByLabel('Username').fill('alice');
  await page.getByLabel('Password').fill('not-the-password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  check((await page.getByTestId('login-error').innerText()).includes('Wrong username or password'), 'login error');
  check((await page.getByLabel('Username').inputValue()) === 'alice', 'username kept');
  await shot(page, 'login-error');

  await page.getByLabel('Password').fill('correct-horse-battery');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${base}/admin`);
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Audit' }).click();
  await page.waitForURL(`${base}/admin/audit`);
  check((await page.getByTestId('audit-row').count()) >= 4, 'audit rows listed');
  await shot(page, 'audit');

  check((await page.getByTestId('notifications-badge').getAttribute('data-count')) === '1', 'badge counts one open problem');
  await page.getByTestId('notifications-badge').click();
  await page.waitForURL(`${base}/admin/notifications`);
  check((await page.getByTestId('notification').count()) === 1, 'the open problem is listed');
  await shot(page, 'notifications');
  console.log('first_run: ok');
} finally {
  await browser.close();
}
