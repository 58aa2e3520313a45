// Every page of the console, as each role sees it: an administrator, a domain administrator and an end user
// sign in in turn, follow every link of their menu, and try the pages that are not theirs. For each page:
// its status, heading and a screenshot (`<role>-NN-<page>.png`, 1400 px wide as an administrator's screen);
// what a page shows that the CLI can also say (messages held, quarantine rows) goes into `seen` for
// browser.rs to compare.

// A navigation's status, or 0 with the browser's error when it gave none (an empty error answer).
async function visit(page, url) {
  try {
    const res = await page.goto(url);
    return { status: res ? res.status() : 0 };
  } catch (e) {
    return { status: 0, error: e.message.split('\n')[0] };
  }
}

export default async function walk({ BASE, env, page, seen, shot, check, text, open, clickAndLoad }) {
  const accounts = JSON.parse(env('ACCOUNTS'));
  const forbidden = JSON.parse(env('FORBIDDEN'));
  await page.setViewportSize({ width: 1400, height: 900 });
  seen.roles = {};
  for (const a of accounts) {
    const role = { nav: [], pages: {}, refused: {} };
    seen.roles[a.role] = role;
    await page.context().clearCookies();
    await open(`${BASE}/login`);
    await page.fill('#name', a.name);
    await page.fill('#password', a.password);
    await clickAndLoad(page.locator('#login'));
    check(!page.url().includes('/login'), `${a.name} could not sign in: ${page.url()}`);
    role.home = new URL(page.url()).pathname;

    const links = await page.locator('nav a').evaluateAll((as) => as.map((x) => [x.textContent.trim(), x.getAttribute('href')]));
    role.nav = links.map(([name]) => name);
    let n = 0;
    for (const [name, href] of links) {
      const { status, error } = await visit(page, `${BASE}${href}`);
      const here = { status, error, path: new URL(page.url()).pathname, h1: '' };
      if (await page.locator('h1').count()) here.h1 = await text('h1');
      if (await page.locator('#held').count()) here.held = await text('#held');
      if (await page.locator('#quarantine').count()) {
        here.quarantine_rows = await page.locator('#quarantine a[href^="/console/quarantine/"]').count();
      }
      // A page that failed says so in words; a page that rendered has its menu.
      here.has_nav = (await page.locator('nav').count()) === 1;
      role.pages[name] = here;
      n += 1;
      await shot(`${a.role}-${String(n).padStart(2, '0')}-${name.toLowerCase().replace(/[^a-z]+/g, '-')}`);
    }
    // The pages one level down, where decisions are taken: a message of the log, a quarantined message,
    // a sender domain (the first link of each list the role has).
    role.details = {};
    for (const [name, list, link] of [
      ['message', '/console/log', 'table a[href^="/console/log/"]'],
      ['quarantined', '/console/quarantine', '#quarantine a[href^="/console/quarantine/"]'],
      ['sender-domain', '/console/domains', 'a[href^="/console/domains/"]'],
    ]) {
      if (!role.nav.length || !links.some(([, href]) => href.startsWith(list))) continue;
      await visit(page, `${BASE}${list}`);
      const first = page.locator(link).first();
      if (!(await first.count())) continue;
      const href = await first.getAttribute('href');
      const { status } = await visit(page, `${BASE}${href}`);
      role.details[name] = { status, path: href, h1: (await page.locator('h1').count()) ? await text('h1') : '' };
      n += 1;
      await shot(`${a.role}-${String(n).padStart(2, '0')}-${name}`);
    }
    for (const path of forbidden[a.role] || []) {
      role.refused[path] = (await visit(page, `${BASE}${path}`)).status;
    }
  }
}
