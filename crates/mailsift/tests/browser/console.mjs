// Drives Debian's Chromium through mailsift's web console, as a person would, for
// crates/mailsift/tests/browser.rs (which starts the gateway, its next hop and the mail, and checks
// afterwards what arrived). One scenario per run, chosen by SCENARIO:
//
// - "console": an administrator logs in, searches the message log for a quarantined message, opens it,
//   releases it from its detail page, then looks at the quarantine list, a held message's preview and the
//   policy page.
// - "digest": an end user opens a "Release" link from their quarantine digest, confirms it, and follows the
//   page's link to their own quarantine (and may not see the administrators' pages).
//
// - anything else: scenarios/<SCENARIO>.mjs, whose default export is called with this file's tools
//   ({ BASE, env, page, context, seen, shot, check, text, open, clickAndLoad, foreign }).
//
// Every page visited is saved as a PNG in SHOTS. On success the last line on standard output is a JSON object
// with what the browser saw; on failure the script saves failure.png, prints the page's URL and text to
// standard error and exits non-zero.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (browser.rs sets it)`);
  return v;
};

const BASE = env('BASE_URL');
const SHOTS = env('SHOTS');
const SCENARIO = env('SCENARIO');
fs.mkdirSync(SHOTS, { recursive: true });

// Without the background-networking switches Chromium keeps trying to reach Google's services; the tests
// only ever talk to 127.0.0.1.
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'mailsift-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1280, height: 900 },
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
const page = context.pages()[0] ?? (await context.newPage());
page.setDefaultTimeout(10_000);
page.setDefaultNavigationTimeout(10_000);

// Anything the console asks for beyond itself would be a bug (its CSP forbids it anyway): record it.
const foreign = [];
page.on('request', (r) => {
  if (!r.url().startsWith(BASE) && !r.url().startsWith('data:')) foreign.push(r.url());
});

const seen = { scenario: SCENARIO, screenshots: [] };

async function shot(name) {
  const file = path.join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  seen.screenshots.push(file);
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function text(selector) {
  return (await page.locator(selector).innerText()).trim();
}

/// Goes to a URL and insists on a 200 answer.
async function open(url) {
  const res = await page.goto(url);
  check(res && res.status() === 200, `GET ${url}: status ${res && res.status()}`);
  return res;
}

/// Clicks something that submits a form or follows a link, and waits for the page it leads to.
async function clickAndLoad(locator) {
  await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), locator.click()]);
}

async function consoleScenario() {
  const name = env('ADMIN_NAME');
  const password = env('ADMIN_PASSWORD');
  const wanted = env('RELEASE_SUBJECT');
  const held = env('HELD_SUBJECT');

  // A console page without a session leads to the login form, which brings us back.
  await open(`${BASE}/console`);
  check(page.url().includes('/login'), `expected the login page, got ${page.url()}`);
  await page.fill('#name', name);
  await page.fill('#password', password);
  await clickAndLoad(page.locator('#login'));
  check(new URL(page.url()).pathname === '/console', `after login: ${page.url()}`);
  seen.held_on_dashboard = await text('#held');
  check(await page.locator('svg').count() >= 3, 'the dashboard shows no charts');
  await shot('01-dashboard');

  // The message log: search by subject and action, as an administrator looking for one message would.
  await page.click('nav >> text=Message log');
  await page.waitForURL('**/console/log');
  await page.fill('input[name=subject]', wanted.split(' ').slice(-2).join(' '));
  await page.selectOption('select[name=action]', 'quarantine');
  await clickAndLoad(page.locator('#search'));
  const rows = page.locator('#log tr', { hasText: wanted });
  check((await rows.count()) === 1, `the log search shows ${await rows.count()} rows for ${wanted}`);
  seen.log_rows = (await page.locator('#log tr').count()) - 1;
  check((await rows.locator('td').nth(5).innerText()).trim() === 'quarantine', 'the row is not a quarantine');
  await shot('02-log-search');

  // The message's detail page: the verdict, and the quarantined copy with its buttons.
  await clickAndLoad(rows.locator('a').first());
  check(page.url().includes('/console/log/'), `detail: ${page.url()}`);
  seen.reference = page.url().split('/').pop();
  check((await text('#action')) === 'quarantine', `detail action: ${await text('#action')}`);
  check((await text('main')).includes('TEST_QUARANTINE_WORD'), 'the verdict does not show the rule that fired');
  const release = page.locator('#quarantined button[id^="release-"]');
  check((await release.count()) === 1, `release buttons: ${await release.count()}`);
  seen.released_id = Number((await release.getAttribute('id')).replace('release-', ''));
  await shot('03-log-detail');

  await clickAndLoad(release);
  const flash = await text('#flash');
  check(flash.includes('released to bob@example.com'), `after release: ${flash}`);
  check((await text('#quarantined')).includes('released'), 'the quarantine row does not say released');
  check((await page.locator('#quarantined button[id^="release-"]').count()) === 0, 'still a release button');
  seen.release_flash = flash;
  await shot('04-log-detail-released');

  // The quarantine: the released message is gone from the held list, the other is there.
  await page.click('nav >> text=Quarantine');
  await page.waitForURL('**/console/quarantine');
  const list = await text('#quarantine');
  check(list.includes(held), `the quarantine list lacks ${held}`);
  check(!list.includes(wanted), `the quarantine list still shows the released ${wanted}`);
  await shot('05-quarantine-list');

  await clickAndLoad(page.locator('#quarantine a', { hasText: held }));
  check((await text('#state')) === 'held', `preview state: ${await text('#state')}`);
  const preview = await text('#preview');
  check(preview.includes('hxxps://'), `links are not neutralised in the preview: ${preview}`);
  check((await page.locator('#preview a').count()) === 0, 'the preview has clickable links');
  check((await page.locator('#release').count()) === 1 && (await page.locator('#approve').count()) === 1,
    'the preview lacks the release and approve buttons');
  seen.preview = preview;
  await shot('06-quarantine-preview');

  await page.click('nav >> text=Policy');
  await page.waitForURL('**/console/policy');
  check((await text('#domains')).includes('example.com'), 'the policy page does not list example.com');
  check((await page.locator('#rules').count()) === 1, 'an administrator sees no filter rules table');
  await shot('07-policy');
}

async function digestScenario() {
  const link = env('RELEASE_LINK');
  const wanted = env('RELEASE_SUBJECT');
  const held = env('HELD_SUBJECT');

  // Opening the link only asks; nothing is released until the button is pressed.
  await open(link);
  check((await text('h1')) === 'Release this message?', `link page: ${await text('h1')}`);
  check((await text('main table')).includes(wanted), `the link page does not name ${wanted}`);
  check((await page.locator('#confirm').count()) === 1, 'no #confirm button');
  await shot('08-digest-link-confirm');

  await clickAndLoad(page.locator('#confirm'));
  const done = await text('#done');
  check(done.includes('released to carol@example.com'), `after confirming: ${done}`);
  seen.done = done;
  await shot('09-digest-link-done');

  // The page's own link opens the recipient's quarantine, in a session limited to it.
  await clickAndLoad(page.locator('a', { hasText: 'Your quarantine' }));
  // The link's page moves on to the quarantine by itself (it sets the session first).
  await page.waitForURL('**/console/quarantine');
  check(new URL(page.url()).pathname === '/console/quarantine', `quarantine link: ${page.url()}`);
  check((await text('h1')) === 'Quarantine of carol@example.com', `heading: ${await text('h1')}`);
  const list = await text('#quarantine');
  check(list.includes(held), `the end user's quarantine lacks ${held}`);
  check(!list.includes(wanted), `the end user's quarantine still shows the released ${wanted}`);
  check((await page.locator('nav a', { hasText: 'Message log' }).count()) === 0, 'an end user is offered the message log');
  seen.user_nav = await text('nav');
  await shot('10-end-user-quarantine');

  // An end user's session is not an administrator's.
  const res = await page.goto(`${BASE}/console/log`);
  check(res.status() === 403, `an end user opening the message log got ${res.status()}`);

  // The same link again: it says what happened and offers nothing more.
  await open(link);
  check((await page.locator('#confirm').count()) === 0, 'the used link still offers #confirm');
  check((await text('h1')) === 'This message was already released', `used link heading: ${await text('h1')}`);
  seen.reopened = await text('#done');
  await shot('11-digest-link-reopened');
}

let failed = false;
try {
  if (SCENARIO === 'console') await consoleScenario();
  else if (SCENARIO === 'digest') await digestScenario();
  else {
    // Other scenarios live in scenarios/<SCENARIO>.mjs, one file each, and get the same tools.
    const file = path.join(path.dirname(new URL(import.meta.url).pathname), 'scenarios', `${SCENARIO}.mjs`);
    check(fs.existsSync(file), `unknown SCENARIO ${SCENARIO} (no ${file})`);
    const { default: run } = await import(file);
    await run({ BASE, env, page, context, seen, shot, check, text, open, clickAndLoad, foreign });
  }
  check(foreign.length === 0, `the console asked for other sites: ${foreign.join(', ')}`);
} catch (e) {
  failed = true;
  console.error(`browser test failed at ${page.url()}: ${e.message}`);
  try {
    await page.screenshot({ path: path.join(SHOTS, 'failure.png'), fullPage: true });
    console.error(`page text:\n${(await page.locator('body').innerText()).slice(0, 4000)}`);
  } catch (_) {
    // The page may be gone; the first message says what failed.
  }
} finally {
  await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
if (failed) process.exit(1);
console.log(JSON.stringify(seen));
