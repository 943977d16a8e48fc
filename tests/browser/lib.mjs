// Shared set-up for browser tests: playwright-core (from tests/peers/node) driving Debian's Chromium.
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(path.join(process.env.NODE_PATH, 'noop.js'));
const { chromium, selectors } = require('playwright-core');

// Pages mark elements for tests with data-test="…".
selectors.setTestIdAttribute('data-test');

export async function launch() {
  const browser = await chromium.launch({
    executablePath: process.env.ROSTER_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--no-first-run', '--disable-sync', '--disable-quic'],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  return { browser, page };
}

export async function shot(page, name) {
  await page.screenshot({ path: path.join(process.env.SCREENSHOT_DIR, `${name}.png`), fullPage: true });
}

// Signs in at the oidc-provider peer: its login page (any password), then its consent page; either is skipped
// when the provider remembers the person. Returns once the browser is back on `base`.
export async function oidcLogin(page, base, user) {
  for (let i = 0; i < 4; i++) {
    await page.waitForURL(u => u.href.startsWith(base) || u.href.includes('/interaction/'));
    if (page.url().startsWith(base)) return;
    const login = page.locator('input[name="login"]');
    if (await login.count()) {
      await login.fill(user);
      await page.locator('input[name="password"]').fill('any-password');
    }
    await page.locator('button[type="submit"]').first().click();
    await page.waitForLoadState('domcontentloaded');
  }
}

export function check(cond, message) {
  if (!cond) throw new Error(`check failed: ${message}`);
}
