// Sync trouble as an admin sees it: the Notifications page, held removals on the Sync page, Apply removals.
// Usage: node sync_problems.mjs BASE_URL
import { launch, shot, check } from './lib.mjs';

const [base] = process.argv.slice(2);
const { browser, page } = await launch();
try {
  await page.goto(`${base}/login`);
  await page.getByLabel('Username').fill('alice');
  await page.getByLabel('Password').fill('correct-horse-battery');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${base}/admin`);
  const badge = await page.getByTestId('notifications-badge').getAttribute('data-count');
  check(Number(badge) >= 2, `badge counts the open problems (${badge})`);
  await page.getByTestId('notifications-badge').click();
  await page.waitForURL(`${base}/admin/notifications`);
  const text = await page.locator('main').innerText();
  check(text.includes('Entra ID service is unreachable'), 'unreachable notification');
  check(text.includes('Sync held the removal of 30 users'), 'held removals notification');
  await shot(page, 'notifications-sync-problems');

  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Sync' }).click();
  await page.waitForURL(`${base}/admin/sync`);
  check((await page.getByTestId('held-removals').getAttribute('data-count')) === '30', 'held removals on the Sync page');
  await shot(page, 'sync-held-removals');
  await page.getByRole('button', { name: 'Apply removals' }).click();
  await page.waitForURL(`${base}/admin/sync`);
  check((await page.getByTestId('flash').innerText()).includes('30 users marked Not synced'), 'applied');
  check((await page.getByTestId('held-removals').count()) === 0, 'nothing held any more');

  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Notifications' }).click();
  await page.getByRole('button', { name: 'Mark all read' }).click();
  await page.waitForURL(`${base}/admin/notifications`);
  check((await page.getByTestId('notifications-badge').getAttribute('data-count')) === '0', 'all read');
  await page.getByLabel('Status').selectOption({ label: 'Resolved' });
  await page.getByRole('button', { name: 'Filter' }).click();
  check((await page.locator('main').innerText()).includes('Sync held the removal of 30 users'), 'resolved stays readable');
  await shot(page, 'notifications-resolved');
  console.log('sync_problems: ok');
} finally {
  await browser.close();
}
