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

export function check(cond, message) {
  if (!cond) throw new Error(`check failed: ${message}`);
}
