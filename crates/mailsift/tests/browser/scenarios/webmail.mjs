// An end user reads their quarantine digest in webmail on another site and clicks "Your whole quarantine".
// The webmail page is served here, on 127.0.0.1 under the name "localhost" (another site than the console's
// 127.0.0.1 for the browser's SameSite rules), so the click is a cross-site navigation as it is from a real
// webmail. The console's session cookie is SameSite=Strict: the user must still land on their quarantine,
// not on the login page.

import http from 'node:http';

export default async function webmail({ env, page, seen, shot, check, text, clickAndLoad, foreign }) {
  const link = env('QUARANTINE_LINK');
  const subject = env('HELD_SUBJECT');
  const html = `<!doctype html><title>Webmail</title><h1>Inbox: Quarantine digest</h1>
<p>You have messages in quarantine.</p><p><a id="open" href="${link.replace(/"/g, '&quot;')}">Your whole quarantine</a></p>`;
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(html);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const webmail = `http://localhost:${server.address().port}/inbox`;
  try {
    const res = await page.goto(webmail);
    check(res && res.status() === 200, `webmail page: ${res && res.status()}`);
    check(new URL(page.url()).hostname !== new URL(link).hostname, 'the webmail page is on the same host');
    await shot('01-webmail-digest');

    await clickAndLoad(page.locator('#open'));
    // Where the click ends (after any step the console takes on its own site).
    await page.waitForURL('**/console/quarantine', { timeout: 10_000 });
    seen.landed = new URL(page.url()).pathname;
    seen.heading = await text('h1');
    const list = await text('#quarantine');
    check(list.includes(subject), `the quarantine reached from webmail lacks ${subject}: ${list}`);
    await shot('02-quarantine-from-webmail');

    // The session holds: a page of the console opened next is still the user's, not the login page.
    await clickAndLoad(page.locator('nav a', { hasText: 'Quarantine' }));
    check(new URL(page.url()).pathname === '/console/quarantine', `after a second click: ${page.url()}`);
    seen.second = await text('h1');
  } finally {
    server.close();
    // The webmail page is the one other site this scenario visits on purpose.
    for (let i = foreign.length - 1; i >= 0; i--) if (foreign[i].startsWith(webmail.replace('/inbox', ''))) foreign.splice(i, 1);
  }
}
