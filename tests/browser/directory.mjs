// Users page as an admin uses it: search by a few letters, filter, sort, open a user, create a local user.
// Usage: node directory.mjs BASE_URL PREFIX EXPECTED_UPN
import { launch, shot, check } from './lib.mjs';

const [base, prefix, expectedUpn] = process.argv.slice(2);
const { browser, page } = await launch();
try {
  await page.goto(`${base}/login`);
  await page.getByLabel('Username').fill('alice');
  await page.getByLabel('Password').fill('correct-horse-battery');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${base}/admin`);
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Users' }).click();
  await page.waitForURL(/\/admin\/users/);
  await page.getByLabel('Search users').fill(prefix);
  await page.getByRole('button', { name: 'Apply' }).click();
  await page.waitForURL(/q=/);
  const upns = await page.getByTestId('user-row').evaluateAll(rows => rows.map(r => r.dataset.upn));
  check(upns.includes(expectedUpn), `search finds ${expectedUpn} (got ${upns.slice(0, 5)})`);
  await shot(page, 'users-search');

  await page.getByLabel('Source').selectOption({ label: 'Entra ID' });
  await page.getByLabel('Status').selectOption({ label: 'Active' });
  await page.getByRole('button', { name: 'Apply' }).click();
  await page.waitForURL(/status=active/);
  await page.getByTestId('sort-link').filter({ hasText: 'Display name' }).click();
  await page.waitForURL(/sort=name/);
  await shot(page, 'users-filtered');

  await page.locator(`[data-upn="${expectedUpn}"] a`).first().click();
  await page.waitForURL(/\/admin\/users\/[0-9a-f-]+$/);
  check((await page.getByTestId('attributes').innerText()).includes(expectedUpn), 'detail page shows the user');
  await shot(page, 'user-detail');

  await page.goto(`${base}/admin/users/new`);
  await page.getByLabel('Username (UPN)').fill('walk.in@corp.example');
  await page.getByLabel('Email').fill('walk.in@corp.example');
  await page.getByLabel('First name').fill('Walk');
  await page.getByLabel('Last name').fill('In');
  await page.getByRole('button', { name: 'Create user' }).click();
  await page.waitForURL(/\/admin\/users\/[0-9a-f-]+$/);
  check((await page.getByTestId('flash').innerText()).includes('created'), 'local user created');
  check((await page.getByTestId('user-status').innerText()) === 'Active', 'active');
  await shot(page, 'local-user');
  console.log('directory: ok');
} finally {
  await browser.close();
}
