// The policy as people change it in the console, read back as the page shows it, for browser.rs to compare
// with the CLI's view of the same store: an administrator adds two rules and disables the first, sets two
// organisation-wide ASF options and adds an organisation-wide blocked sender; an end user adds an allowed
// sender of their own; a domain administrator reads the policy page of their domain (ASF modes read-only).

async function signIn({ BASE, page, open, clickAndLoad, check }, name, password) {
  await page.context().clearCookies();
  await open(`${BASE}/login`);
  await page.fill('#name', name);
  await page.fill('#password', password);
  await clickAndLoad(page.locator('#login'));
  check(!page.url().includes('/login'), `${name} could not sign in`);
}

// The cells' text of each row of a table (header rows, with <th>, left out).
async function rows(page, selector) {
  return page.locator(`${selector} tr`).evaluateAll((trs) =>
    trs
      .filter((tr) => tr.querySelector('td') && !tr.querySelector('td[colspan]'))
      .map((tr) => Array.from(tr.querySelectorAll('td')).map((td) => {
        const select = td.querySelector('select');
        if (select) return `select:${select.value}:${select.options[select.selectedIndex].text}`;
        return td.innerText.trim();
      })),
  );
}

export default async function policy(tools) {
  const { BASE, env, page, seen, shot, check, open, clickAndLoad } = tools;
  const accounts = JSON.parse(env('ACCOUNTS'));
  await page.setViewportSize({ width: 1400, height: 900 });

  // The administrator.
  await signIn(tools, accounts.admin.name, accounts.admin.password);
  await open(`${BASE}/console/policy`);
  for (const rule of [
    'name = "tag invoices"\nconditions = [ { field = "subject", op = "contains", value = "invoice" } ]\nactions = [ { action = "tag" } ]',
    'name = "hold wire transfers"\nconditions = [ { field = "subject", op = "contains", value = "wire transfer" } ]\nactions = [ { action = "quarantine" } ]',
  ]) {
    await page.fill('#rule-text', rule);
    await clickAndLoad(page.locator('#add-rule'));
    check(new URL(page.url()).pathname === '/console/policy', `after adding a rule: ${page.url()}`);
  }
  await clickAndLoad(page.locator('#toggle-1'));
  await page.selectOption('select[name="asf.web_bugs"]', 'on');
  await page.selectOption('select[name="asf.empty_messages"]', 'test');
  await clickAndLoad(page.locator('#save-asf'));
  await page.selectOption('#lists-add select[name="list"]', 'block');
  await page.fill('#lists-add input[name="sender"]', 'offers@spammy.test');
  await clickAndLoad(page.locator('#add-entry'));
  seen.admin = {
    rules: await rows(page, '#rules'),
    asf: await rows(page, '#asf'),
    lists: await rows(page, '#lists'),
    flash: (await page.locator('.flash').count()) ? (await page.locator('.flash').first().innerText()).trim() : '',
  };
  await shot('admin-policy');

  // The end user's own senders.
  await signIn(tools, accounts.user.name, accounts.user.password);
  await open(`${BASE}/console/lists`);
  await page.selectOption('#list', 'allow');
  await page.fill('#sender', 'friend@partner.test');
  await clickAndLoad(page.locator('#add-sender'));
  seen.user = { own: await rows(page, '#own-lists'), others: await rows(page, '#other-lists') };
  await shot('user-senders');

  // The domain administrator: the modes in force, read-only; the entries of their domain only.
  await signIn(tools, accounts.domain_admin.name, accounts.domain_admin.password);
  await open(`${BASE}/console/policy`);
  seen.domain_admin = {
    asf: await rows(page, '#asf'),
    lists: await rows(page, '#lists'),
    rules_table: await page.locator('#rules').count(),
    asf_form: await page.locator('#save-asf').count(),
  };
  await shot('domain-admin-policy');
}
