//! The web console in a real browser: Debian's Chromium, driven by Playwright (`playwright-core` from npm,
//! no browser download) through `tests/browser/console.mjs`, against `mailsift serve` as a process, with a
//! real next hop (a private Debian Postfix, or `mailsift smtp-sink` where Postfix cannot run) and mail sent
//! over SMTP.
//!
//! - `an_administrator_releases_a_quarantined_message_from_the_log`: logs in, finds the quarantined message
//!   in the message log, opens it, releases it; the message then arrives at the next hop, exactly once.
//! - `an_end_user_releases_a_message_from_a_digest_link`: the quarantine digest goes out through the gateway
//!   to the next hop; its "Release" link, opened and confirmed in the browser, releases that one message,
//!   and the page leads to the end user's own quarantine.
//!
//! The browser checks what a person sees; this file checks what happened (what the next hop got, what the
//! quarantine says through the API). Every page visited is saved as a PNG under
//! `target/browser-screenshots/<scenario>/`.
//!
//! Needs Chromium (`apt-get install chromium`), Node.js and `npm ci` in `tests/browser/` (`.ci/run` does
//! all three). Without them the tests say what is missing and pass, unless `MAILSIFT_REQUIRE_BROWSER=1`
//! (set by `.ci/run`) or `CI=true` makes that a failure.

#[path = "support/browser.rs"]
mod support;

use std::time::Instant;

use mailsift_testkit::clients::HttpClient;
use support::*;

// ---------------------------------------------------------------------------------------------------------
// The scenarios

/// The administrator's scenario on `stack`: a clean message and two held ones sent in, the browser signs in,
/// finds one held message in the log and releases it; the next hop then has it once, marked as released,
/// and the other stays held.
fn an_administrator_releases_from_the_log(b: &Browser, stack: &Stack, release: &str, held: &str) {
    stack.send("bob@example.com", "Lunch on Friday", "Shall we meet at noon?");
    stack.send("bob@example.com", release, "Please find the overdue invoice attached.");
    stack.send("alice@example.com", held, "Your reward waits at https://rewards.example.net/claim today.");
    assert_eq!(stack.logged("Lunch")["action"], "deliver");
    assert_eq!(stack.logged(release)["action"], "quarantine");
    assert_eq!(stack.logged(held)["action"], "quarantine");
    assert_eq!(stack.next_hop.wait_for(1).len(), 1, "only the clean message is delivered before the release");

    let seen = run_browser(
        b,
        "console",
        &[
            ("BASE_URL", stack.base_url()),
            ("ADMIN_NAME", ADMIN.into()),
            ("ADMIN_PASSWORD", ADMIN_PASSWORD.into()),
            ("RELEASE_SUBJECT", release.into()),
            ("HELD_SUBJECT", held.into()),
        ],
    );
    assert_eq!(seen["held_on_dashboard"], "2", "{seen}");
    assert_eq!(seen["log_rows"], 1, "the search finds only that message: {seen}");

    // The released message reached the next hop once, marked as released; the other is still held.
    let delivered = stack.next_hop.wait_for(2);
    let subjects: Vec<&str> = delivered.iter().map(|m| subject_of(m)).collect();
    assert_eq!(subjects.iter().filter(|s| **s == release).count(), 1, "{subjects:?}\n{}", stack.next_hop.log());
    assert_eq!(delivered.len(), 2, "{subjects:?}");
    let released = delivered.iter().find(|m| subject_of(m) == release).unwrap();
    assert!(has_header(released, "X-Mailsift-Released"), "{released}");
    assert!(released.contains("overdue invoice attached"), "{released}");

    let items = stack.quarantined(release);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], seen["released_id"]);
    assert!(items[0]["released_at"].is_i64(), "{items:?}");
    assert!(stack.quarantined(held)[0]["released_at"].is_null());
}

#[test]
fn an_administrator_releases_a_quarantined_message_from_the_log() {
    let Some(b) = browser() else { return };
    let started = Instant::now();
    let stack = Stack::start();
    an_administrator_releases_from_the_log(
        &b,
        &stack,
        "quarantineme: invoice 4411 overdue",
        "quarantineme: claim your reward",
    );
    eprintln!("console scenario: {:.1} s in all", started.elapsed().as_secs_f64());
}

#[test]
fn an_end_user_releases_a_message_from_a_digest_link() {
    let Some(b) = browser() else { return };
    let started = Instant::now();
    let stack = Stack::start();
    let release = "quarantineme: your parcel is waiting";
    let held = "quarantineme: weekly offers";
    stack.send("carol@example.com", release, "Your parcel could not be delivered.");
    stack.send("carol@example.com", held, "This week's offers.");
    assert_eq!(stack.logged(release)["action"], "quarantine");
    assert_eq!(stack.logged(held)["action"], "quarantine");

    // The digest, sent on demand, goes through the gateway's delivery path to the next hop.
    let run = stack.api().post_json("/api/v1/digest/send", &serde_json::json!({}));
    assert_eq!(run.status, 200, "{}", run.text());
    assert_eq!(run.json()["sent"], serde_json::json!(["carol@example.com"]), "{}", run.text());
    let delivered = stack.next_hop.wait_for(1);
    assert_eq!(delivered.len(), 1, "{}", stack.next_hop.log());
    let digest = &delivered[0];
    assert!(subject_of(digest).starts_with("Quarantine digest: 2 message(s)"), "{digest}");
    let text = digest_text(digest);
    let link = digest_link(&text, release, "Release:");
    assert!(link.starts_with(&format!("{}/d/", stack.base_url())), "{link}");

    let seen = run_browser(
        &b,
        "digest",
        &[
            ("BASE_URL", stack.base_url()),
            ("RELEASE_LINK", link.clone()),
            ("RELEASE_SUBJECT", release.into()),
            ("HELD_SUBJECT", held.into()),
        ],
    );
    assert!(seen["reopened"].as_str().unwrap().contains("already released"), "{seen}");

    // Released once: the digest and the message, however often the link is used.
    let path = link.strip_prefix(&stack.base_url()).unwrap();
    let again = HttpClient::new(stack.http).post_form(path, &[]);
    assert_eq!(again.status, 409, "a second release through the link: {}", again.text());
    let delivered = stack.next_hop.wait_for(2);
    let subjects: Vec<&str> = delivered.iter().map(|m| subject_of(m)).collect();
    assert_eq!(delivered.len(), 2, "{subjects:?}\n{}", stack.next_hop.log());
    let released = delivered.iter().find(|m| subject_of(m) == release).expect("the released message arrived");
    assert!(has_header(released, "X-Mailsift-Released"), "{released}");
    assert!(stack.quarantined(release)[0]["released_at"].is_i64());
    assert!(stack.quarantined(held)[0]["released_at"].is_null());
    eprintln!("digest scenario: {:.1} s in all", started.elapsed().as_secs_f64());
}

/// The digest read in webmail on another site: "Your whole quarantine" clicked there is a cross-site
/// navigation, on which browsers do not send the console's SameSite=Strict session cookie. The user must
/// still land on their own quarantine (and stay signed in to it), not on the login page.
#[test]
fn a_digest_link_clicked_in_webmail_on_another_site_opens_the_quarantine() {
    let Some(b) = browser() else { return };
    let stack = Stack::start();
    let held = "quarantineme: invoice from the print shop";
    stack.send("dave@example.com", held, "The invoice for the posters.");
    assert_eq!(stack.logged(held)["action"], "quarantine");
    let run = stack.api().post_json("/api/v1/digest/send", &serde_json::json!({}));
    assert_eq!(run.status, 200, "{}", run.text());
    let delivered = stack.next_hop.wait_for(1);
    assert_eq!(delivered.len(), 1, "{}", stack.next_hop.log());
    let text = digest_text(&delivered[0]);
    let link = text
        .lines()
        .find_map(|l| l.strip_prefix("Your whole quarantine: "))
        .unwrap_or_else(|| panic!("no whole-quarantine link in {text}"))
        .trim()
        .to_string();
    assert!(link.starts_with(&format!("{}/d/", stack.base_url())), "{link}");
    let seen = run_browser(
        &b,
        "webmail",
        &[("BASE_URL", stack.base_url()), ("QUARANTINE_LINK", link), ("HELD_SUBJECT", held.into())],
    );
    assert_eq!(seen["landed"], "/console/quarantine", "{seen}");
    assert_eq!(seen["heading"], "Quarantine of dave@example.com", "{seen}");
    assert_eq!(seen["second"], "Quarantine of dave@example.com", "{seen}");
}

/// Every page as each role sees it: an administrator, a domain administrator (of example.org only) and an
/// end user (carol@example.com) follow every link of their menu; each page answers 200 with its menu and a
/// heading, the pages that are not theirs are refused, and what a page counts agrees with the CLI's view of
/// the same installation (held messages, the end user's quarantine rows). Screenshots of every page land in
/// target/browser-screenshots/walk/.
#[test]
fn every_page_answers_each_role_as_the_cli_sees_it() {
    let Some(b) = browser() else { return };
    let stack = Stack::start_with(None, "\n[[smtp.domains]]\nname = \"example.org\"\n");
    stack.add_account("ops", "domain_admin", "ops password one", &["example.org"]);
    stack.add_account("carol@example.com", "user", "carol password one", &[]);
    stack.send("bob@example.com", "Lunch on Friday", "Shall we meet at noon?");
    stack.send("carol@example.com", "quarantineme: your parcel is waiting", "Your parcel could not be delivered.");
    stack.send("carol@example.com", "quarantineme: weekly offers", "This week's offers.");
    stack.send("erin@example.org", "quarantineme: invoice 77", "Pay now.");
    for s in ["Lunch", "parcel", "weekly", "invoice 77"] {
        stack.logged(s);
    }
    let accounts = serde_json::json!([
        { "name": ADMIN, "password": ADMIN_PASSWORD, "role": "admin" },
        { "name": "ops", "password": "ops password one", "role": "domain_admin" },
        { "name": "carol@example.com", "password": "carol password one", "role": "user" },
    ]);
    let forbidden = serde_json::json!({
        "domain_admin": ["/console/outbound"],
        "user": ["/console/log", "/console/policy", "/console/reports", "/console/domains", "/console/outbound"],
    });
    let seen = run_browser(
        &b,
        "walk",
        &[("BASE_URL", stack.base_url()), ("ACCOUNTS", accounts.to_string()), ("FORBIDDEN", forbidden.to_string())],
    );
    let roles = &seen["roles"];
    for (role, wanted) in [
        ("admin", &["Dashboard", "Message log", "Quarantine", "Senders", "Reports", "Policy", "Outbound"][..]),
        ("domain_admin", &["Dashboard", "Message log", "Quarantine", "Senders", "Reports", "Policy"][..]),
        ("user", &["Quarantine", "Your senders"][..]),
    ] {
        let nav: Vec<&str> = roles[role]["nav"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(nav, wanted, "{role}'s menu: {seen}");
        for name in wanted {
            let p = &roles[role]["pages"][name];
            assert_eq!(p["status"], 200, "{role} {name}: {p}");
            assert_eq!(p["has_nav"], true, "{role} {name} is not a console page: {p}");
            assert!(!p["h1"].as_str().unwrap_or("").is_empty(), "{role} {name} has no heading: {p}");
        }
        for (path, status) in roles[role]["refused"].as_object().unwrap() {
            assert_eq!(status, 403, "{role} opened {path}: {seen}");
        }
    }
    // One level down: a message's page and a quarantined message's page for the managers, a quarantined
    // message for the end user, a sender domain's page for the managers; each answers 200 with a heading.
    for (role, wanted) in [
        ("admin", &["message", "quarantined", "sender-domain"][..]),
        ("domain_admin", &["message", "quarantined", "sender-domain"][..]),
        ("user", &["quarantined"][..]),
    ] {
        for name in wanted {
            let d = &roles[role]["details"][name];
            assert_eq!(d["status"], 200, "{role} {name}: {seen}");
            assert!(!d["h1"].as_str().unwrap_or("").is_empty(), "{role} {name}: {seen}");
        }
    }
    // The CLI's view of the same quarantine.
    let held = |rcpt: Option<&str>| {
        let mut args = vec!["quarantine", "list", "--json"];
        if let Some(r) = rcpt {
            args.extend(["--rcpt", r]);
        }
        stack.cli(&args, "").lines().filter(|l| !l.trim().is_empty()).count()
    };
    assert_eq!(held(None), 3);
    assert_eq!(roles["admin"]["pages"]["Dashboard"]["held"], held(None).to_string(), "{seen}");
    assert_eq!(roles["admin"]["pages"]["Quarantine"]["quarantine_rows"], held(None), "{seen}");
    assert_eq!(roles["domain_admin"]["pages"]["Dashboard"]["held"], held(Some("erin@example.org")).to_string());
    assert_eq!(roles["domain_admin"]["pages"]["Quarantine"]["quarantine_rows"], 1, "{seen}");
    assert_eq!(roles["user"]["home"], "/console/quarantine");
    assert_eq!(roles["user"]["pages"]["Quarantine"]["quarantine_rows"], held(Some("carol@example.com")), "{seen}");
}

/// The policy as people change it in the console is the policy the CLI reads: an administrator adds two rules
/// and disables the first, sets two organisation-wide ASF options and blocks a sender for the organisation;
/// an end user allows a sender of their own; a domain administrator of example.org reads their policy page.
/// Each page's rows are compared with `rules list`, `asf list` and `lists list` over the same store.
#[test]
fn the_policy_the_console_shows_is_the_policy_the_cli_reads() {
    let Some(b) = browser() else { return };
    let stack = Stack::start_with(None, "\n[[smtp.domains]]\nname = \"example.org\"\n");
    stack.add_account("ops", "domain_admin", "ops password one", &["example.org"]);
    stack.add_account("carol@example.com", "user", "carol password one", &[]);
    // One entry of each scope the pages must keep apart.
    stack.cli(&["lists", "add", "allow", "billing@vendor.test", "--recipient", "example.org"], "");
    stack.cli(&["lists", "add", "block", "pest@nuisance.test", "--recipient", "bob@example.com"], "");
    let accounts = serde_json::json!({
        "admin": { "name": ADMIN, "password": ADMIN_PASSWORD },
        "domain_admin": { "name": "ops", "password": "ops password one" },
        "user": { "name": "carol@example.com", "password": "carol password one" },
    });
    let seen = run_browser(&b, "policy", &[("BASE_URL", stack.base_url()), ("ACCOUNTS", accounts.to_string())]);
    let json_lines = |args: &[&str]| -> Vec<serde_json::Value> {
        stack.cli(args, "").lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let cells = |v: &serde_json::Value| -> Vec<Vec<String>> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect())
            .collect()
    };

    // Rules: number, name, enabled, as `rules list` says (positions from 1, a disabled rule says so).
    let cli_rules: Vec<(String, String, String)> = json_lines(&["rules", "list", "--json"])
        .iter()
        .map(|r| {
            let enabled = r["rule"]["enabled"].as_bool().unwrap_or(true);
            (
                (r["position"].as_u64().unwrap() + 1).to_string(),
                r["rule"]["name"].as_str().unwrap().to_string(),
                if enabled { "yes" } else { "no" }.to_string(),
            )
        })
        .collect();
    assert_eq!(
        cli_rules,
        [("1".into(), "tag invoices".into(), "no".into()), ("2".into(), "hold wire transfers".into(), "yes".into())],
        "{seen}"
    );
    let page_rules: Vec<(String, String, String)> =
        cells(&seen["admin"]["rules"]).into_iter().map(|r| (r[0].clone(), r[1].clone(), r[2].clone())).collect();
    assert_eq!(page_rules, cli_rules, "the policy page's rules: {seen}");

    // ASF: the mode each select shows is the mode `asf list` says is in force, stored ones marked so.
    let cli_asf: std::collections::BTreeMap<String, (String, bool)> =
        serde_json::from_str::<serde_json::Value>(&stack.cli(&["asf", "list", "--json"], ""))
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                (
                    o["option"].as_str().unwrap().to_string(),
                    (o["mode"].as_str().unwrap().to_string(), !o["stored"].is_null()),
                )
            })
            .collect();
    assert_eq!(cli_asf["web_bugs"], ("on".to_string(), true));
    assert_eq!(cli_asf["empty_messages"], ("test".to_string(), true));
    assert_eq!(cli_asf.values().filter(|(_, stored)| *stored).count(), 2, "only what was changed is stored");
    let page_asf = cells(&seen["admin"]["asf"]);
    assert_eq!(page_asf.len(), cli_asf.len(), "{seen}");
    for row in &page_asf {
        let (mode, stored) = &cli_asf[&row[0]];
        let shown = if *stored {
            format!("select:{mode}:{mode}")
        } else {
            format!("select:default:{mode} (the configuration file's)")
        };
        assert_eq!(row[1], shown, "{}: {seen}", row[0]);
    }
    for row in cells(&seen["domain_admin"]["asf"]) {
        assert_eq!(row[1], cli_asf[&row[0]].0, "the domain administrator reads the mode in force: {seen}");
    }
    assert_eq!(seen["domain_admin"]["asf_form"], 0, "{seen}");
    assert_eq!(seen["domain_admin"]["rules_table"], 0, "filter rules are the administrator's: {seen}");

    // Lists: the same entries (id, list, sender, whose), and each role sees its own scope.
    let cli_lists: Vec<(String, String, String, String)> = json_lines(&["lists", "list", "--json"])
        .iter()
        .map(|e| {
            let inner = &e["entry"]["entry"];
            (
                e["id"].to_string(),
                e["list"].as_str().unwrap().to_string(),
                inner["sender"].as_str().unwrap().to_string(),
                inner["recipient"].as_str().unwrap_or("organisation").to_string(),
            )
        })
        .collect();
    assert_eq!(cli_lists.len(), 4, "two seeded, the administrator's block, carol's allow: {cli_lists:?}");
    assert!(cli_lists.iter().any(|e| e.1 == "block" && e.2 == "offers@spammy.test" && e.3 == "organisation"));
    assert!(cli_lists.iter().any(|e| e.1 == "allow" && e.2 == "friend@partner.test" && e.3 == "carol@example.com"));
    let page = |v: &serde_json::Value| -> Vec<(String, String, String, String)> {
        cells(v).into_iter().map(|r| (r[0].clone(), r[1].clone(), r[2].clone(), r[3].clone())).collect()
    };
    // (The administrator's page was read before carol added hers.)
    let before_carol: Vec<_> = cli_lists.iter().filter(|e| e.3 != "carol@example.com").cloned().collect();
    assert_eq!(page(&seen["admin"]["lists"]), before_carol, "the administrator sees every entry: {seen}");
    let ops: Vec<_> = cli_lists.iter().filter(|e| e.3 == "example.org").cloned().collect();
    assert_eq!(page(&seen["domain_admin"]["lists"]), ops, "example.org's entries only: {seen}");
    let own: Vec<Vec<String>> = cells(&seen["user"]["own"]);
    assert_eq!(own.len(), 1, "{seen}");
    assert_eq!((own[0][0].as_str(), own[0][1].as_str()), ("friend@partner.test", "allowed"), "{seen}");
    let others = cells(&seen["user"]["others"]);
    assert!(others.iter().any(|r| r[0] == "offers@spammy.test"), "the organisation's block applies to carol: {seen}");
    assert!(!others.iter().any(|r| r[0] == "pest@nuisance.test"), "bob's own entry is not carol's: {seen}");
}

/// Two nodes on one PostgreSQL: the same scenario with mail entering at node A and the browser and the API
/// at node B. Node B's dashboard counts, its log finds and its console releases what node A quarantined,
/// and it is delivered once.
#[test]
fn at_node_b_an_administrator_releases_what_node_a_quarantined() {
    let Some(b) = browser() else { return };
    let Some(pg) = mailsift_testkit::postgres::Postgres::start() else { return };
    let url = pg.create_database("browser_nodes");
    let stack = Stack::start_nodes(Some(&url));
    an_administrator_releases_from_the_log(
        &b,
        &stack,
        "quarantineme: invoice 5512 overdue",
        "quarantineme: you have won",
    );
}
