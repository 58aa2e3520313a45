//! The console's pages as administrators and end users live in them (issue 22), over real HTTP in front of a
//! real gateway and store: the policy page tells the truth about rules (numbers from 1, enabled or not) and
//! keeps a domain's ASF overrides; the dashboard's words and chart count the same rows over the chosen range;
//! an end user keeps their own senders and cannot reach anyone else's; sender domains and users' reports have
//! pages of their own, scoped like the log.

use mailsift_store::PolicyStore;

#[path = "support/stack.rs"]
mod support;
use support::*;

fn message(from: &str, to: &str, subject: &str) -> String {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <{}@test>\r\n\r\nHello there, see you at lunch.\r\n",
        subject.replace(' ', ".")
    )
}

fn post(
    c: &mut mailsift_testkit::clients::HttpClient,
    csrf: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> (u16, String) {
    let mut all = vec![("_csrf", csrf)];
    all.extend_from_slice(fields);
    let r = c.post_form(path, &all);
    let text = r.text();
    let flash = r.header("location").map(|l| l.to_string()).unwrap_or_default();
    (r.status, if flash.is_empty() { text } else { flash })
}

/// The text of the `<td>`s of the rules table's rows: (number, name, enabled).
fn rule_rows(html: &str) -> Vec<(String, String, String)> {
    let table = html.split("<table id=\"rules\">").nth(1).unwrap().split("</table>").next().unwrap();
    table
        .split("<tr>")
        .skip(2)
        .filter(|r| r.contains("class=\"enabled\""))
        .map(|r| {
            let cells: Vec<String> = r
                .split("<td")
                .skip(1)
                .map(|c| c.split_once('>').unwrap().1.split("</td>").next().unwrap().to_string())
                .collect();
            (cells[0].clone(), cells[1].clone(), cells[2].clone())
        })
        .collect()
}

#[test]
fn the_policy_page_numbers_rules_from_one_and_says_which_are_enabled() {
    let s = start();
    let (mut c, csrf) = login(&s, "admin", ADMIN_PW);
    for (name, at) in [("first rule", ""), ("second rule", ""), ("before both", "1")] {
        let rule = format!(
            "name = \"{name}\"\nconditions = [ {{ field = \"subject\", op = \"contains\", value = \"{name}\" }} ]\nactions = [ {{ action = \"tag\" }} ]"
        );
        let (status, said) = post(&mut c, &csrf, "/console/policy/rules/add", &[("rule", &rule), ("at", at)]);
        assert_eq!(status, 303, "{said}");
    }
    let (status, said) = post(&mut c, &csrf, "/console/policy/rules/toggle", &[("name", "second rule")]);
    assert_eq!(status, 303, "{said}");
    let page = c.get("/console/policy").text();
    let rows = rule_rows(&page);
    let want = |n: &str, name: &str, e: &str| (n.to_string(), name.to_string(), e.to_string());
    assert_eq!(
        rows,
        vec![want("1", "before both", "yes"), want("2", "first rule", "yes"), want("3", "second rule", "no")]
    );
    // The store says the same (positions from 0 there).
    let stored: Vec<(usize, String, bool)> =
        s.web.db.rules().unwrap().into_iter().map(|r| (r.position, r.rule.name, r.rule.enabled)).collect();
    assert_eq!(
        stored,
        vec![(0, "before both".into(), true), (1, "first rule".into(), true), (2, "second rule".into(), false)]
    );
    // The add box is a placeholder, not a rule that a click would store.
    let box_ = page.split("id=\"rule-text\"").nth(1).unwrap();
    assert!(box_.contains("placeholder=") && box_.split('>').nth(1).unwrap().starts_with("</textarea"), "{box_}");
}

#[test]
fn a_domain_s_asf_overrides_are_merged_and_unknown_options_refused() {
    let s = start();
    let (mut c, csrf) = login(&s, "admin", ADMIN_PW);
    let page = c.get("/console/policy").text();
    let placeholder =
        page.split("name=\"asf\"").nth(1).unwrap().split("placeholder=\"").nth(1).unwrap().split('"').next().unwrap();
    let option = placeholder.split('=').next().unwrap().to_string();
    assert!(!option.is_empty() && option != "iframe", "{placeholder}");
    let save = |c: &mut mailsift_testkit::clients::HttpClient, asf: &str| {
        post(c, &csrf, "/console/policy/domain", &[("name", "example.com"), ("asf", asf)])
    };
    assert_eq!(save(&mut c, "frame_or_iframe_tags=test").0, 303);
    assert_eq!(save(&mut c, "web_bugs=test").0, 303);
    let asf = |s: &Stack| {
        let (_, json) = s.web.db.domains().unwrap().into_iter().find(|(n, _)| n == "example.com").unwrap();
        serde_json::from_str::<serde_json::Value>(&json).unwrap()["asf"].clone()
    };
    assert_eq!(
        asf(&s),
        serde_json::json!({ "frame_or_iframe_tags": "test", "web_bugs": "test" }),
        "merged, not replaced"
    );
    assert_eq!(save(&mut c, "web_bugs=default").0, 303);
    assert_eq!(asf(&s), serde_json::json!({ "frame_or_iframe_tags": "test" }), "default removes an override");
    let (status, said) = save(&mut c, "iframe=on");
    assert_eq!(status, 200);
    assert!(said.contains("no such ASF option &quot;iframe&quot;"), "{said}");
    assert_eq!(asf(&s), serde_json::json!({ "frame_or_iframe_tags": "test" }), "a refused change changes nothing");
}

#[test]
fn the_dashboard_counts_in_words_what_its_chart_shows_over_the_range() {
    let s = start();
    for (i, subject) in ["lunch", "quarantineme one", "quarantineme two", "lunch again"].iter().enumerate() {
        let to = if i == 3 { "carol@other.test" } else { "bob@example.com" };
        assert_eq!(send(&s, "alice@sender.example", to, &message("alice@sender.example", to, subject)), 250);
    }
    s.web.db.flush().unwrap();
    let (mut c, _) = login(&s, "admin", ADMIN_PW);
    for range in ["", "?range=7d", "?range=90d"] {
        let page = c.get(&format!("/console{range}")).text();
        let count = |id: &str| -> u64 {
            page.split(&format!("id=\"{id}\">"))
                .nth(1)
                .map(|r| r.split('<').next().unwrap().parse().unwrap())
                .unwrap_or(0)
        };
        assert_eq!((count("count-deliver"), count("count-quarantine"), count("total")), (2, 2, 4), "{range}: {page}");
        assert!(page.contains("Delivered <strong") && page.contains("Quarantined <strong"), "{page}");
        assert!(!page.contains("messages_delivered"), "metric names are not words");
        // The chart's legend carries the same totals.
        assert!(page.contains("deliver (2)") && page.contains("quarantine (2)"), "{range}: the chart disagrees");
    }
    assert_eq!(c.get("/console?range=1y").status, 400);
    assert_eq!(c.get("/console?from=2026-02-31").status, 400);
    // A domain administrator's counts are their domain's.
    let (mut da, _) = login(&s, "da", DA_PW);
    let page = da.get("/console").text();
    assert!(page.contains("id=\"total\">1<"), "{page}");
}

#[test]
fn an_end_user_keeps_their_own_senders_and_no_one_else_s() {
    let s = start();
    let (mut bob, csrf) = login(&s, "bob@example.com", BOB_PW);
    let (mut admin, admin_csrf) = login(&s, "admin", ADMIN_PW);
    // Entries that apply to bob without being his, and one of someone else's.
    for (sender, rcpt) in
        [("news@org-wide.example", ""), ("partner.example", "example.com"), ("x@carols.example", "carol@example.com")]
    {
        let (st, said) = post(
            &mut admin,
            &admin_csrf,
            "/console/policy/lists/add",
            &[("list", "allow"), ("sender", sender), ("recipient", rcpt)],
        );
        assert_eq!(st, 303, "{said}");
    }
    // The form's recipient, whatever it says, is bob.
    let (st, said) = post(
        &mut bob,
        &csrf,
        "/console/lists/add",
        &[("list", "allow"), ("sender", "friend@pals.example"), ("recipient", "example.com")],
    );
    assert_eq!(st, 303, "{said}");
    let (st, _) = post(&mut bob, &csrf, "/console/lists/add", &[("list", "block"), ("sender", "pushy.example")]);
    assert_eq!(st, 303);
    let entries = s.web.db.list_entries().unwrap();
    let bobs: Vec<(String, Option<String>)> = entries
        .iter()
        .filter(|e| e.entry.recipient() == Some("bob@example.com"))
        .map(|e| (e.entry.sender().to_string(), e.entry.recipient().map(String::from)))
        .collect();
    assert_eq!(bobs.len(), 2, "{entries:?}");
    let page = bob.get("/console/lists").text();
    let own = page.split("id=\"own-lists\"").nth(1).unwrap().split("</table>").next().unwrap();
    let others = page.split("id=\"other-lists\"").nth(1).unwrap().split("</table>").next().unwrap();
    assert!(own.contains("friend@pals.example") && own.contains("pushy.example"), "{own}");
    assert!(others.contains("news@org-wide.example") && others.contains("partner.example"), "{others}");
    assert!(!page.contains("x@carols.example"), "carol's entry shown to bob");
    // Removing someone else's entry, or the organisation's, is refused and changes nothing.
    for e in entries.iter().filter(|e| e.entry.recipient() != Some("bob@example.com")) {
        let (st, _) = post(&mut bob, &csrf, "/console/lists/remove", &[("id", &e.id.to_string())]);
        assert_eq!(st, 404, "bob removed {:?}", e.entry.sender());
    }
    assert_eq!(s.web.db.list_entries().unwrap().len(), entries.len());
    let mine = entries.iter().find(|e| e.entry.sender() == "friend@pals.example").unwrap();
    assert_eq!(post(&mut bob, &csrf, "/console/lists/remove", &[("id", &mine.id.to_string())]).0, 303);
    assert_eq!(s.web.db.list_entries().unwrap().len(), entries.len() - 1);
    // Without the CSRF field nothing happens.
    let r = bob.post_form("/console/lists/add", &[("list", "allow"), ("sender", "sneaky@x.example")]);
    assert_eq!(r.status, 403);
}

#[test]
fn sender_domains_and_reports_have_pages_scoped_like_the_log() {
    let s = start();
    for (from, to, subject) in [
        ("news@acme.example", "bob@example.com", "acme news"),
        ("news@acme.example", "bob@example.com", "quarantineme acme offer"),
        ("news@acme.example", "carol@other.test", "acme for carol"),
        ("bill@other-sender.example", "carol@other.test", "invoice"),
    ] {
        assert_eq!(send(&s, from, to, &message(from, to, subject)), 250);
    }
    s.web.db.flush().unwrap();
    let (mut admin, _) = login(&s, "admin", ADMIN_PW);
    // The message log takes the same time range: today's four, none on days long past, filters kept.
    let rows = |html: &str| html.split("id=\"log\"").nth(1).unwrap().matches("href=\"/console/log/").count() / 2;
    assert_eq!(rows(&admin.get("/console/log?range=24h").text()), 4);
    let old = admin.get("/console/log?from=2020-01-01&to=2020-01-02").text();
    assert_eq!(rows(&old), 0, "{old}");
    assert!(old.contains("2020-01-01 to 2020-01-02"), "the range is said");
    assert_eq!(rows(&admin.get("/console/log?range=24h&subject=acme").text()), 3);
    let index = admin.get("/console/domains").text();
    let rows = index.split("id=\"senders\"").nth(1).unwrap();
    let acme = rows.find("acme.example").unwrap();
    let other = rows.find("other-sender.example").unwrap();
    assert!(acme < other, "most messages first");
    let page = admin.get("/console/domains/acme.example?range=30d").text();
    assert!(page.contains("id=\"sender-total\">3<"), "{page}");
    assert!(page.contains("quarantine 1") && page.contains("deliver 2"), "{page}");
    // A domain administrator of other.test sees only mail to other.test.
    let (mut da, _) = login(&s, "da", DA_PW);
    let page = da.get("/console/domains/acme.example").text();
    assert!(page.contains("id=\"sender-total\">1<"), "{page}");
    assert!(!page.contains("acme offer"));
    // An end user reports the held message as not spam; the reports page lists it with what came of it.
    let held = s.web.db.quarantine_list(&Default::default()).unwrap();
    let (mut bob, csrf) = login(&s, "bob@example.com", BOB_PW);
    let r = bob.post_form(&format!("/console/quarantine/{}/report", held[0].id), &[("_csrf", &csrf)]);
    assert_eq!(r.status, 303, "{}", r.text());
    let page = admin.get("/console/reports").text();
    let table = page.split("id=\"reports\"").nth(1).unwrap();
    assert!(table.contains("bob@example.com") && table.contains("not spam"), "{table}");
    assert!(page.contains("id=\"fp-count\">1<"), "{page}");
    assert_eq!(bob.get("/console/reports").status, 403);
    assert_eq!(bob.get("/console/domains").status, 403);

    // The same over the JSON API, for scripts: the same counts, the same scope, the same refusals.
    let senders = api(&s, "admin", ADMIN_PW).get("/api/v1/senders?range=30d").json();
    let acme = senders["senders"].as_array().unwrap().iter().find(|r| r["domain"] == "acme.example").unwrap().clone();
    assert_eq!((acme["total"].as_u64(), acme["by_action"]["quarantine"].as_u64()), (Some(3), Some(1)), "{senders}");
    assert_eq!(senders["cut"], false);
    let one = api(&s, "da", DA_PW).get("/api/v1/senders/acme.example").json();
    assert_eq!(one["row"]["total"], 1, "scoped to other.test: {one}");
    let reports = api(&s, "admin", ADMIN_PW).get("/api/v1/reports?range=7d").json();
    let list = reports["reports"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{reports}");
    assert_eq!((list[0]["said"].as_str(), list[0]["reporter"].as_str()), (Some("not spam"), Some("bob@example.com")));
    let mut bob_api = api(&s, "bob@example.com", BOB_PW);
    assert_eq!(bob_api.get("/api/v1/senders").status, 403);
    assert_eq!(bob_api.get("/api/v1/reports").status, 403);
    assert_eq!(api(&s, "admin", ADMIN_PW).get("/api/v1/senders?range=forever").status, 400);
}

/// An API client signed in as `name` (session and its CSRF header).
fn api(s: &Stack, name: &str, password: &str) -> mailsift_testkit::clients::HttpClient {
    let mut c = mailsift_testkit::clients::HttpClient::new(s.http);
    let r = c.post_json("/api/v1/login", &serde_json::json!({ "name": name, "password": password }));
    assert_eq!(r.status, 200, "{}", r.text());
    let csrf = r.json()["csrf"].as_str().unwrap().to_string();
    c.set_header("X-CSRF-Token", &csrf);
    c
}

/// An HTML message with a web bug (a 1×1 remote image), which the `web_bugs` ASF option catches.
fn web_bug_message(to: &str, subject: &str) -> String {
    format!(
        "From: news@sender.example\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <{}@sender.example>\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
         <html><body><p>Our news this week.</p><img src=\"http://track.sender.example/o.gif?u=1\" width=\"1\" \
         height=\"1\"></body></html>\r\n",
        subject.replace(' ', ".")
    )
}

/// Whether the log row of the message with this subject has the web-bug symbol.
fn caught_web_bug(s: &Stack, subject: &str) -> bool {
    s.web.db.flush().unwrap();
    let q = mailsift_store::LogQuery { subject: Some(subject.into()), limit: 1, ..Default::default() };
    let row = s.web.db.log_search(&q).unwrap().into_iter().next().unwrap_or_else(|| panic!("no row for {subject}"));
    row.symbols.iter().any(|(n, _)| n == "ASF_WEB_BUGS")
}

#[test]
fn organisation_wide_asf_options_are_set_in_the_console_and_the_gateway_applies_them() {
    let s = start();
    let (mut admin, csrf) = login(&s, "admin", ADMIN_PW);
    let (mut da, da_csrf) = login(&s, "da", DA_PW);
    // The control: off (the embedded default), nothing stored, the web bug is not scored.
    assert_eq!(
        send(&s, "news@sender.example", "bob@example.com", &web_bug_message("bob@example.com", "week one")),
        250
    );
    assert!(!caught_web_bug(&s, "week one"), "web_bugs is off by default");
    let page = admin.get("/console/policy").text();
    let select = page.split("name=\"asf.web_bugs\"").nth(1).unwrap().split("</select>").next().unwrap();
    assert!(select.contains("<option value=\"default\" selected>off (the configuration file&#39;s)"), "{select}");

    // A domain administrator sees the modes but cannot change them.
    let da_page = da.get("/console/policy").text();
    assert!(da_page.contains("id=\"asf-mode-web_bugs\">off") && !da_page.contains("name=\"asf.web_bugs\""));
    assert_eq!(post(&mut da, &da_csrf, "/console/policy/asf", &[("asf.web_bugs", "on")]).0, 403);
    assert_eq!(s.web.db.organisation_settings().unwrap(), None, "nothing stored by a refused change");

    // The administrator turns it on; the form sends every option, the untouched ones as "default".
    let fields: Vec<(String, String)> = mailsift_engine::config::AsfConfig::OPTIONS
        .iter()
        .map(|o| (format!("asf.{o}"), if *o == "web_bugs" { "on" } else { "default" }.to_string()))
        .collect();
    let refs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (status, location) = post(&mut admin, &csrf, "/console/policy/asf", &refs);
    assert_eq!(status, 303, "{location}");
    assert!(location.contains("web_bugs%3Don") || location.contains("web_bugs=on"), "{location}");
    let stored: serde_json::Value = serde_json::from_str(&s.web.db.organisation_settings().unwrap().unwrap()).unwrap();
    assert_eq!(stored, serde_json::json!({ "asf": { "web_bugs": "on" } }), "only what was changed is stored");
    assert!(s.web.db.domains().unwrap().iter().all(|(n, _)| n != "*"), "the organisation's row is not a domain");
    let page = admin.get("/console/policy").text();
    let row = page.split("id=\"asf-mode-web_bugs\"").nth(1).unwrap().split("</tr>").next().unwrap();
    assert!(row.contains("<option value=\"on\" selected>") && row.contains("stored (the configuration file says off)"));

    // The running gateway judges with it at once, for every domain...
    assert_eq!(
        send(&s, "news@sender.example", "bob@example.com", &web_bug_message("bob@example.com", "week two")),
        250
    );
    assert!(caught_web_bug(&s, "week two"), "the organisation-wide mode is applied");
    // ...and a domain's own override still wins for its mail.
    assert_eq!(
        post(&mut admin, &csrf, "/console/policy/domain", &[("name", "other.test"), ("asf", "web_bugs=off")]).0,
        303
    );
    s.web.gateway.refresh_policy(false).unwrap();
    assert_eq!(
        send(&s, "news@sender.example", "carol@other.test", &web_bug_message("carol@other.test", "week three")),
        250
    );
    assert!(!caught_web_bug(&s, "week three"), "other.test's own off wins");

    // Refused, all or nothing, with the option named; then back to the configuration file's.
    let mut api = api(&s, "admin", ADMIN_PW);
    let bad =
        api.post_json("/api/v1/asf", &serde_json::json!({ "changes": { "web_bugs": "default", "iframe": "on" } }));
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(bad.text().contains("no ASF option \\\"iframe\\\""), "{}", bad.text());
    let bad = api.post_json("/api/v1/asf", &serde_json::json!({ "changes": { "web_bugs": "maybe" } }));
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(s.web.db.organisation_settings().unwrap().unwrap().contains("\"web_bugs\":\"on\""), "unchanged");
    let ok = api.post_json("/api/v1/asf", &serde_json::json!({ "changes": { "web_bugs": "default" } }));
    assert_eq!(ok.status, 200, "{}", ok.text());
    let modes = ok.json();
    let web_bugs = modes.as_array().unwrap().iter().find(|o| o["name"] == "web_bugs").unwrap().clone();
    assert_eq!((web_bugs["mode"].as_str(), web_bugs["source"].as_str()), (Some("off"), Some("configuration file")));
    assert_eq!(
        send(&s, "news@sender.example", "bob@example.com", &web_bug_message("bob@example.com", "week four")),
        250
    );
    assert!(!caught_web_bug(&s, "week four"), "back to the configuration file's off");
}
