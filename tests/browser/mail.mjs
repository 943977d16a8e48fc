// Admin > Mail (SMTP) in a browser: reach it from the navigation, save the settings by their labels,
// send a test email, and see the outbox. Usage: node mail.mjs BASE_URL SMTP_PORT
import { launch, shot, check } from './lib.mjs';

const [base, smtpPort] = process.argv.slice(2);
const { browser, page } = await launch();
try {
  await page.goto(`${base}/login`);
  await page.getByLabel('Username').fill('alice');
  await page.getByLabel('Password').fill('correct-horse-battery');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${base}/admin`);
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Mail (SMTP)' }).click();
  await page.waitForURL(`${base}/admin/mail`);
  check((await page.getByTestId('not-configured').count()) === 1, 'says SMTP is not set up');
  await shot(page, 'mail-not-configured');

  await page.getByLabel('SMTP host').fill('127.0.0.1');
  await page.getByLabel('Port').fill(smtpPort);
  await page.getByLabel('Security').selectOption('none');
  await page.getByLabel('From name').fill('Contoso IT');
  await page.getByLabel('From address').fill('it@contoso.test');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.waitForURL(`${base}/admin/mail`);
  check((await page.getByTestId('flash').innerText()).includes('Mail settings saved'), 'saved');

  await page.getByLabel('Send test email to').fill('admin@contoso.test');
  await page.getByRole('button', { name: 'Send test email' }).click();
  await page.getByTestId('test-result').waitFor();
  check((await page.getByTestId('test-result').getAttribute('data-ok')) === 'true', 'test email accepted');
  check((await page.getByTestId('outbox-table').count()) === 1, 'outbox lists the mail sent by the worker');
  await shot(page, 'mail-settings');
} finally {
  await browser.close();
}
