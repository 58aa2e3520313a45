//! `mailsift rules`, `lists` and `policy` as an administrator runs them, on a real data directory: rules added
//! from TOML and from options, moved, switched off and removed; a message tested against them; allowed and
//! blocked senders with when they last matched; the whole policy exported and imported.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use mailsift_store::{Database, PolicyStore};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/messages").join(name)
}

fn temp_dir(name: &str) -> PathBuf {
    mailsift_testkit::temp_dir("mailsift-policy-cli", name)
}

/// Runs `mailsift --data-dir DIR ARGS...`, with stdin when given.
fn run(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailsift"));
    c.env_remove("MAILSIFT_CONFIG").env_remove("MAILSIFT_DATA_DIR").arg("--data-dir").arg(dir.join("data"));
    c.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// Runs and expects success; returns stdout.
/// The gateway database the commands store the policy in: only serve, init and `store create` make one.
fn create_store(dir: &Path) {
    ok(dir, &["store", "create"]);
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args, None);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Runs and expects the error status; returns stderr.
fn fails(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args, None);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8(out.stderr).unwrap()
}

/// The rule names in `rules list` order.
fn listed(dir: &Path) -> Vec<String> {
    ok(dir, &["rules", "list", "--json"])
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["rule"]["name"].as_str().unwrap().to_string())
        .collect()
}

const WEB_FORMS: &str = r#"
# The contact form on the web host sends as our list address; its mail must not be filtered.
name = "web forms"
comment = "the list's bounces address, through its own servers"
conditions = [
  { field = "envelope_from", op = "is", value = "cfrg-bounces@irtf.org" },
  { field = "header", header = "Received", op = "contains", value = "mail.ietf.org" },
]
actions = [{ action = "allow" }]
"#;

#[test]
fn rules_are_added_listed_moved_switched_off_shown_and_removed() {
    let dir = temp_dir("rules");
    // Nothing stored yet: reading creates nothing.
    assert!(ok(&dir, &["rules", "list"]).contains("no filter rules"));
    assert!(!dir.join("data").exists());
    create_store(&dir);

    // From a TOML file, from standard input, from options.
    std::fs::write(dir.join("web-forms.toml"), WEB_FORMS).unwrap();
    let out = ok(&dir, &["rules", "add", dir.join("web-forms.toml").to_str().unwrap()]);
    assert_eq!(out.lines().next().unwrap(), "added rule \"web forms\" at position 1");
    let stdin = "[[rules]]\nname = \"gtube\"\nconditions = [{ field = \"subject\", op = \"is\", value = \"GTUBE\" }]\n\
                 actions = [{ action = \"quarantine\" }]\n";
    let out = run(&dir, &["rules", "add", "-"], Some(stdin));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let out = ok(
        &dir,
        &[
            "rules",
            "add",
            "--name",
            "marketing service",
            "--if-sender",
            "ourdomain.example",
            "--if-header",
            "Received:contains:mta7.mailer.example",
            "--then",
            "add_score:-3",
            "--then",
            "add_header:X-Marketing:yes",
            "--at",
            "1",
        ],
    );
    assert!(out.contains("at position 1"), "{out}");
    assert_eq!(listed(&dir), ["marketing service", "web forms", "gtube"]);

    let table = ok(&dir, &["rules", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[1].contains("marketing service") && lines[1].contains("all of 2"), "{table}");
    assert!(lines[1].contains("add_score,add_header") && lines[1].trim_end().ends_with("never"), "{table}");

    ok(&dir, &["rules", "move", "GTUBE", "1"]);
    assert_eq!(listed(&dir), ["gtube", "marketing service", "web forms"]);
    let e = fails(&dir, &["rules", "move", "gtube", "4"]);
    assert!(e.contains("there are 3 rules"), "{e}");

    assert!(ok(&dir, &["rules", "disable", "marketing service"]).contains("disabled"));
    assert!(ok(&dir, &["rules", "list"]).lines().nth(2).unwrap().contains("disabled"));
    assert!(ok(&dir, &["rules", "disable", "marketing service"]).contains("already disabled"));
    ok(&dir, &["rules", "enable", "marketing service"]);

    // `show` prints TOML that `replace` takes back.
    let shown = ok(&dir, &["rules", "show", "Web Forms"]);
    assert!(shown.starts_with("# rule 3 of 3, enabled; added "), "{shown}");
    assert!(shown.contains("[[rules]]\nname = \"web forms\"\n"), "{shown}");
    assert!(shown
        .contains("  { field = \"header\", header = \"Received\", op = \"contains\", value = \"mail.ietf.org\" },"));
    let edited = shown.replace("mail.ietf.org", "ietfa.amsl.com");
    let out = run(&dir, &["rules", "replace", "web forms", "-"], Some(&edited));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(ok(&dir, &["rules", "show", "web forms"]).contains("ietfa.amsl.com"));
    assert_eq!(listed(&dir), ["gtube", "marketing service", "web forms"]);

    ok(&dir, &["rules", "rm", "marketing service"]);
    assert_eq!(listed(&dir), ["gtube", "web forms"]);
    let e = fails(&dir, &["rules", "rm", "marketing service"]);
    assert!(e.contains("no rule named \"marketing service\""), "{e}");
}

#[test]
fn an_invalid_rule_is_refused_with_the_field_and_the_reason_and_nothing_is_stored() {
    let dir = temp_dir("invalid");
    create_store(&dir);
    std::fs::write(dir.join("web-forms.toml"), WEB_FORMS).unwrap();
    ok(&dir, &["rules", "add", dir.join("web-forms.toml").to_str().unwrap()]);

    let e = fails(&dir, &["rules", "add", "--name", "broken", "--if", "subject:matches:(unclosed", "--then", "tag"]);
    assert!(e.starts_with("mailsift: rule \"broken\": conditions[0].value: "), "{e}");
    let e = fails(&dir, &["rules", "add", "--name", "net", "--if", "client_ip:in_cidr:10.0.0.0/40", "--then", "allow"]);
    assert!(e.contains("rule \"net\": conditions[0]") && e.contains("10.0.0.0/40"), "{e}");
    // Two decisions in one rule.
    let e = fails(&dir, &["rules", "add", "--name", "both", "--then", "allow", "--then", "reject"]);
    assert!(e.contains("rule \"both\": actions["), "{e}");
    // The same name, in other case.
    let e = fails(&dir, &["rules", "add", "--name", "WEB FORMS", "--then", "tag"]);
    assert!(e.contains("rule \"WEB FORMS\": name: a rule named \"web forms\" is stored already"), "{e}");
    // A misspelt key, named with the file.
    std::fs::write(dir.join("typo.toml"), "name = \"t\"\nactons = [{ action = \"tag\" }]\n").unwrap();
    let e = fails(&dir, &["rules", "add", dir.join("typo.toml").to_str().unwrap()]);
    assert!(e.contains("typo.toml") && e.contains("actons"), "{e}");

    assert_eq!(listed(&dir), ["web forms"]);
    let db = Database::open_in(&dir.join("data")).unwrap();
    assert_eq!(db.policy_version().unwrap(), 1, "only the first add changed the policy");
}

#[test]
fn rules_test_shows_which_rule_matched_and_why() {
    let dir = temp_dir("test");
    create_store(&dir);
    std::fs::write(dir.join("web-forms.toml"), WEB_FORMS).unwrap();
    ok(&dir, &["rules", "add", dir.join("web-forms.toml").to_str().unwrap()]);
    let ham = fixture("rspamd_ham.eml");
    let ham = ham.to_str().unwrap();

    // The list's mail, from its servers: the rule allows it.
    let out = ok(&dir, &["rules", "test", ham, "--from", "cfrg-bounces@irtf.org", "--rcpt", "user@example.com"]);
    assert!(
        out.contains(
            "matched #1 \"web forms\": envelope_from is \"cfrg-bounces@irtf.org\"; Received contains \"mail.ietf.org\" => allow"
        ),
        "{out}"
    );
    assert!(out.contains("decision:  deliver (score 0.00, SCL -1), decided by rule \"web forms\""), "{out}");
    assert!(out.contains("lists:     not consulted (a rule decided)"), "{out}");

    // Someone else sending the same message: the sender condition fails, nothing matches.
    let out = ok(&dir, &["rules", "test", ham, "--from", "someone@irtf.org"]);
    assert!(out.contains("no rule matched") && out.contains(", by the score"), "{out}");

    // A disabled rule is not evaluated.
    ok(&dir, &["rules", "disable", "web forms"]);
    let out = ok(&dir, &["rules", "test", ham, "--from", "cfrg-bounces@irtf.org"]);
    assert!(out.contains("0 enabled of 1") && out.contains("no rule matched"), "{out}");
    ok(&dir, &["rules", "enable", "web forms"]);

    // GTUBE would be rejected by its score; an earlier rule quarantines it instead, and a later one that
    // would also have matched is not reached.
    let gtube = fixture("sa_gtube.eml");
    let gtube = gtube.to_str().unwrap();
    let out = ok(&dir, &["rules", "test", gtube]);
    assert!(out.contains("decision:  reject") && out.contains("by the score"), "{out}");
    ok(
        &dir,
        &[
            "rules",
            "add",
            "--name",
            "gtube to quarantine",
            "--if",
            "subject:is:GTUBE",
            "--then",
            "quarantine",
            "--at",
            "1",
        ],
    );
    ok(&dir, &["rules", "add", "--name", "gtube tagged", "--if", "body:contains:Unsolicited", "--then", "tag"]);
    let out = ok(&dir, &["rules", "test", gtube]);
    assert!(out.contains("matched #1 \"gtube to quarantine\": subject is \"GTUBE\" => quarantine"), "{out}");
    assert!(!out.contains("gtube tagged"), "{out}");
    assert!(out.contains("decision:  quarantine") && out.contains("decided by rule \"gtube to quarantine\""), "{out}");

    // The outbound "open sesame" rule: anything carrying the phrase goes out, and only outbound.
    ok(
        &dir,
        &[
            "rules",
            "add",
            "--name",
            "open sesame",
            "--direction",
            "outbound",
            "--if",
            "body:contains:Unsolicited",
            "--then",
            "allow",
            "--at",
            "1",
        ],
    );
    let out = ok(&dir, &["rules", "test", gtube, "--outbound"]);
    assert!(out.contains("matched #1 \"open sesame\"") && out.contains("decision:  deliver"), "{out}");
    let out = ok(&dir, &["rules", "test", gtube]);
    assert!(!out.contains("open sesame") && out.contains("decision:  quarantine"), "{out}");

    // JSON, for scripts.
    let out = ok(&dir, &["rules", "test", gtube, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["rules"]["decision"]["rule"], "gtube to quarantine");
    assert_eq!(v["verdict"]["action"], "quarantine");
}

#[test]
fn lists_are_added_listed_with_last_match_and_expiry_and_removed() {
    let dir = temp_dir("lists");
    assert!(ok(&dir, &["lists", "list"]).contains("no entries"));
    create_store(&dir);
    let out = ok(
        &dir,
        &["lists", "add", "allow", "sender@example.com", "--recipient", "recipient@example.com", "--expires", "30d"],
    );
    assert_eq!(out.trim(), "added allow entry for \"sender@example.com\" (list of recipient@example.com) as entry 1");
    ok(&dir, &["lists", "add", "block", "example.com", "--action", "reject", "--comment", "every example.com sender"]);
    ok(&dir, &["lists", "add", "allow", "partner.example", "--require-auth", "--from-network", "198.51.100.0/24"]);
    // An entry whose time is over, as an import would bring it.
    let out =
        run(&dir, &["policy", "import", "-"], Some("[[block]]\nsender = \"old.example\"\nexpires = 1000000000\n"));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    // Refused: options of the other list, a bad network, the same entry twice, an expiry in the past.
    assert!(fails(&dir, &["lists", "add", "allow", "x.example", "--action", "reject"]).contains("--action"));
    let e = fails(&dir, &["lists", "add", "allow", "x.example", "--from-network", "198.51.100.0/33"]);
    assert!(e.contains("allow entry for \"x.example\": from_network: "), "{e}");
    let e = fails(
        &dir,
        &["lists", "add", "block", "example.com", "--action", "reject", "--comment", "every example.com sender"],
    );
    assert!(e.contains("stored already, with id 2"), "{e}");
    assert!(fails(&dir, &["lists", "add", "block", "y.example", "--expires", "2001-01-01"]).contains("already past"));

    // The gateway reports a match; the list says when.
    let db = Database::open_in(&dir.join("data")).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    db.touch_list_entries(&[2], now - 3 * 86_400).unwrap();
    db.flush().unwrap();

    let table = ok(&dir, &["lists", "list"]);
    let row = |id: &str| table.lines().find(|l| l.split_whitespace().next() == Some(id)).unwrap().to_string();
    assert!(row("1").contains("user recipient@example.com") && row("1").trim_end().ends_with("never"), "{table}");
    assert!(
        row("2").contains("organisation") && row("2").contains("reject") && row("2").contains("(3d ago)"),
        "{table}"
    );
    assert!(row("3").contains("auth, net 198.51.100.0/24"), "{table}");
    assert!(row("4").contains("EXPIRED 2001-09-09"), "{table}");

    // Stale entries only: not matched for a day, or never.
    let stale = ok(&dir, &["lists", "list", "--stale", "7d", "--json"]);
    let ids: Vec<i64> =
        stale.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [1, 3, 4]);
    let blocks = ok(&dir, &["lists", "list", "block", "--json"]);
    let v: Vec<serde_json::Value> = blocks.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(v.len(), 2);
    assert_eq!((v[1]["expired"].as_bool(), v[0]["expired"].as_bool()), (Some(true), Some(false)));
    assert_eq!(v[0]["last_matched"].as_i64(), Some(now - 3 * 86_400));
    let mine = ok(&dir, &["lists", "list", "--recipient", "recipient@example.com", "--json"]);
    assert_eq!(mine.lines().count(), 1);

    // The user's own allow entry beats the organisation's block of the whole domain, for that user only.
    let gtube = fixture("sa_gtube.eml");
    let out = ok(
        &dir,
        &["rules", "test", gtube.to_str().unwrap(), "--rcpt", "recipient@example.com", "--rcpt", "other@example.com"],
    );
    assert!(out.contains("lists:     recipient@example.com: allowed sender \"sender@example.com\""), "{out}");
    assert!(out.contains("lists:     other@example.com: blocked sender \"example.com\""), "{out}");
    assert!(out.contains("for recipient@example.com: deliver (SCL -1)"), "{out}");
    assert!(out.contains("for other@example.com: reject"), "{out}");

    ok(&dir, &["lists", "rm", "2", "4"]);
    let left: Vec<i64> = ok(&dir, &["lists", "list", "--json"])
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_i64().unwrap())
        .collect();
    assert_eq!(left, [1, 3]);
    assert!(fails(&dir, &["lists", "rm", "2"]).contains("no list entry with id 2"));
}

const POLICY: &str = r#"
[[rules]]
name = "web forms"
conditions = [
  { field = "envelope_from", op = "is", value = "forms@ourdomain.example" },
  { field = "header", header = "Received", op = "contains", value = "web01.hosting.example" },
]
actions = [{ action = "allow" }]

[[rules]]
name = "hosted signature service"
comment = "our own mail, back from the signature service"
conditions = [
  { field = "from_domain", op = "is", value = "ourdomain.example" },
  { field = "client_ip", op = "in_cidr", value = "203.0.113.0/24" },
  { field = "header", header = "X-Signature-Service", op = "exists" },
]
actions = [{ action = "allow" }, { action = "add_header", name = "X-Signed", value = "yes" }]

[[rules]]
name = "open sesame"
direction = "outbound"
enabled = false
conditions = [{ field = "body", op = "contains", value = ["the sesame phrase", "abracadabra"] }]
actions = [{ action = "allow" }]

[[allow]]
sender = "partner.example"
recipient = "alice@ourdomain.example"
require_auth = true

[[block]]
sender = "offers@spam.example"
action = "reject"
"#;

#[test]
fn the_policy_exports_and_imports_exactly_and_a_bad_file_changes_nothing() {
    let dir = temp_dir("import");
    create_store(&dir);
    std::fs::write(dir.join("policy.toml"), POLICY).unwrap();
    let out = ok(&dir, &["policy", "import", dir.join("policy.toml").to_str().unwrap(), "--replace"]);
    assert!(out.contains("rules 3 added") && out.contains("entries 2 added"), "{out}");
    assert_eq!(listed(&dir), ["web forms", "hosted signature service", "open sesame"]);
    let exported = ok(&dir, &["policy", "export"]);

    // Into another data directory, and out again: the same text.
    let other = temp_dir("import-other");
    create_store(&other);
    let out = run(&other, &["policy", "import", "-", "--replace"], Some(&exported));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(ok(&other, &["policy", "export"]), exported);
    // Over itself: nothing to change.
    let out = run(&dir, &["policy", "import", "-", "--replace"], Some(&exported));
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to change"));

    // A bad rule in the middle of a file: refused, named by its place in the file, nothing written.
    let bad = POLICY.replace("value = \"203.0.113.0/24\"", "value = \"203.0.113.0/24x\"");
    std::fs::write(dir.join("bad.toml"), bad).unwrap();
    let bad = dir.join("bad.toml");
    for extra in [None, Some("--replace")] {
        let mut args = vec!["policy", "import", bad.to_str().unwrap()];
        args.extend(extra);
        let e = fails(&dir, &args);
        assert!(e.contains("bad.toml") && e.contains("rules[1] \"hosted signature service\": conditions[1]"), "{e}");
    }
    assert_eq!(ok(&dir, &["policy", "export"]), exported);

    // Merge adds what is new, replaces rules of the same name where they stand.
    let more = "[[rules]]\nname = \"Open Sesame\"\ndirection = \"outbound\"\nactions = [{ action = \"stop\" }]\n\
                [[rules]]\nname = \"last\"\nactions = [{ action = \"tag\" }]\n[[block]]\nsender = \"more.example\"\n";
    let out = run(&dir, &["policy", "import", "-"], Some(more));
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("rules 1 added, 1 changed, 0 removed; entries 1 added, 0 removed"));
    assert_eq!(listed(&dir), ["web forms", "hosted signature service", "Open Sesame", "last"]);
}

/// A web form's message as a spoofer would write it: our From address and a Received line naming the web
/// host, sent from anywhere.
const WEB_FORM_MESSAGE: &str = "Received: from web01.hoster.test (web01.hoster.test [203.0.113.50])\r\n\
    \tby mx.acme.test with ESMTP id 1; Mon, 1 Jan 2024 00:00:00 +0000\r\n\
    From: <webform@acme.test>\r\nTo: <sales@acme.test>\r\nSubject: Contact form\r\n\
    Message-ID: <1@web01.hoster.test>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nA visitor wrote.\r\n";

#[test]
fn rules_on_what_the_sender_writes_are_marked_forgeable_and_warned_about_everywhere() {
    let dir = temp_dir("forgeable");
    create_store(&dir);
    // Adding is allowed, and the warning cannot be missed: set apart on standard error, naming each
    // condition a forger writes.
    std::fs::write(dir.join("web-forms.toml"), WEB_FORMS).unwrap();
    let out = run(&dir, &["rules", "add", dir.join("web-forms.toml").to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(0));
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stderr.contains("WARNING: FORGEABLE RULE \"web forms\""), "{stderr}");
    assert!(
        stderr.contains("condition 2: header Received contains \"mail.ietf.org\"   (forgeable: the sender writes it)"),
        "{stderr}"
    );
    assert!(stderr.contains("--if-client-ip"), "the warning says what to add: {stderr}");
    assert!(
        stdout.contains("condition 1: envelope_from is \"cfrg-bounces@irtf.org\"   (forgeable: the sender writes it)"),
        "{stdout}"
    );

    // The same intent tied to the connecting server: no warning; only the From condition is marked.
    let out = run(
        &dir,
        &[
            "rules",
            "add",
            "--name",
            "web form",
            "--if-from",
            "webform@acme.test",
            "--if-client-ip",
            "203.0.113.50/32",
            "--then",
            "allow",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!stderr.contains("WARNING"), "{stderr}");
    assert!(
        stdout.contains("condition 1: from is \"webform@acme.test\"   (forgeable: the sender writes it)"),
        "{stdout}"
    );
    assert!(stdout.contains("condition 2: client_ip in_cidr \"203.0.113.50/32\"\n"), "{stdout}");

    // The fields a forger cannot write, from the options and from --if.
    ok(
        &dir,
        &[
            "rules",
            "add",
            "--name",
            "hoster",
            "--if-client-ptr",
            ".hoster.test",
            "--if-dkim-domain",
            "mcsv.test",
            "--then",
            "add_score:-2",
        ],
    );
    ok(
        &dir,
        &[
            "rules",
            "add",
            "--name",
            "sealed",
            "--if-arc-sealer",
            "sig.example",
            "--if-trusted-hop",
            "relay.acme.test",
            "--then",
            "allow",
        ],
    );
    ok(
        &dir,
        &[
            "rules",
            "add",
            "--name",
            "ptr",
            "--if",
            "client_ptr:is:web01.hoster.test",
            "--if",
            "dkim_headers_domain:is:acme.test",
            "--then",
            "allow",
        ],
    );
    // A blocking rule on the subject is legitimate and not warned about; its condition is still marked.
    let out = run(&dir, &["rules", "add", "--name", "gtube", "--if", "subject:is:GTUBE", "--then", "quarantine"], None);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("WARNING"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("(forgeable: the sender writes it)"));

    let json: Vec<serde_json::Value> =
        ok(&dir, &["rules", "list", "--json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let by_name = |n: &str| json.iter().find(|v| v["rule"]["name"] == n).unwrap().clone();
    assert_eq!(by_name("web forms")["warnings"].as_array().unwrap().len(), 1);
    assert_eq!(by_name("web forms")["forgeable_conditions"], serde_json::json!([1, 2]));
    for quiet in ["web form", "hoster", "sealed", "ptr", "gtube"] {
        assert_eq!(by_name(quiet)["warnings"], serde_json::json!([]), "{quiet}");
    }
    let hoster = by_name("hoster");
    assert_eq!(
        hoster["rule"]["conditions"][0],
        serde_json::json!({"field": "client_ptr", "op": "ends_with", "value": ".hoster.test"})
    );
    assert_eq!(hoster["rule"]["conditions"][1]["field"], "dkim_domain");
    assert_eq!(hoster["forgeable_conditions"], serde_json::json!([]));
    assert_eq!(by_name("sealed")["rule"]["conditions"][0]["field"], "arc_sealer");
    assert_eq!(by_name("sealed")["rule"]["conditions"][1]["field"], "trusted_hop");

    let table = ok(&dir, &["rules", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[1].contains("web forms") && lines[1].contains("all of 2 (2F)"), "{table}");
    assert!(lines[2].contains("!! WARNING: FORGEABLE: rule \"web forms\" lets mail through"), "{table}");
    assert!(lines[3].contains("web form ") && lines[3].contains("all of 2 (1F)"), "{table}");
    assert!(table.matches("WARNING").count() == 1, "{table}");

    // `show` says it in TOML comments, and the text still reads back.
    let shown = ok(&dir, &["rules", "show", "web forms"]);
    assert!(shown.contains("\n# WARNING: FORGEABLE: rule \"web forms\""), "{shown}");
    assert!(
        shown.contains(
            "\n# condition 2: header Received contains \"mail.ietf.org\"   (forgeable: the sender writes it)"
        ),
        "{shown}"
    );
    let out = run(&dir, &["rules", "replace", "web forms", "-"], Some(&shown));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("WARNING: FORGEABLE RULE"));

    // `rules test` on a spoof: a forgeable rule of the same shape lets it through, and says so.
    ok(&dir, &["rules", "rm", "web forms"]);
    ok(
        &dir,
        &[
            "rules",
            "add",
            "--name",
            "spoofable",
            "--if-from",
            "webform@acme.test",
            "--if-header",
            "Received:contains:web01.hoster.test",
            "--then",
            "allow",
            "--at",
            "1",
        ],
    );
    std::fs::write(dir.join("form.eml"), WEB_FORM_MESSAGE).unwrap();
    let msg = dir.join("form.eml");
    let out = ok(&dir, &["rules", "test", msg.to_str().unwrap(), "--ip", "198.18.0.9", "--rcpt", "sales@acme.test"]);
    assert!(out.contains("matched #1 \"spoofable\""), "{out}");
    assert!(out.contains("WARNING: FORGEABLE: rule \"spoofable\""), "{out}");
    assert!(
        out.contains("condition 2: header Received contains \"web01.hoster.test\"   (forgeable: the sender writes it)"),
        "{out}"
    );
    assert!(!out.contains("matched #2 \"web form\""), "the client-ip rule does not match the spoof: {out}");
    let v: serde_json::Value = serde_json::from_str(&ok(
        &dir,
        &["rules", "test", msg.to_str().unwrap(), "--ip", "198.18.0.9", "--rcpt", "sales@acme.test", "--json"],
    ))
    .unwrap();
    assert_eq!(v["warnings"][0]["rule"], "spoofable");
    // From the web server itself, the safe rule matches (the forgeable one first, as ordered).
    ok(&dir, &["rules", "rm", "spoofable"]);
    let out = ok(&dir, &["rules", "test", msg.to_str().unwrap(), "--ip", "203.0.113.50", "--rcpt", "sales@acme.test"]);
    assert!(out.contains("\"web form\"") && out.contains("decided by rule \"web form\""), "{out}");
    assert!(!out.contains("WARNING"), "{out}");
}

/// Rules are numbered from 1, as `rules list` prints them and the console shows them, and every rule command
/// takes that number as well as a name; a rule whose name is a number keeps its name first.
#[test]
fn rule_commands_take_the_number_rules_list_prints() {
    let dir = temp_dir("rules-by-number");
    create_store(&dir);
    for name in ["alpha", "beta", "2"] {
        let rule = format!(
            "name = \"{name}\"\nconditions = [{{ field = \"subject\", op = \"is\", value = \"{name}\" }}]\n\
             actions = [{{ action = \"tag\" }}]\n"
        );
        let out = run(&dir, &["rules", "add", "-"], Some(&rule));
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(listed(&dir), ["alpha", "beta", "2"]);
    assert!(ok(&dir, &["rules", "disable", "1"]).contains("rule \"alpha\" disabled"));
    assert!(ok(&dir, &["rules", "show", "1"]).starts_with("# rule 1 of 3, disabled"));
    // "2" is a rule's name: the name wins over the position.
    assert!(ok(&dir, &["rules", "disable", "2"]).contains("rule \"2\" disabled"));
    let enabled: Vec<bool> = ok(&dir, &["rules", "list", "--json"])
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["rule"]["enabled"] != false)
        .collect();
    assert_eq!(enabled, [false, true, false]);
    ok(&dir, &["rules", "move", "3", "1"]);
    assert_eq!(listed(&dir), ["2", "alpha", "beta"]);
    ok(&dir, &["rules", "rm", "3"]);
    assert_eq!(listed(&dir), ["2", "alpha"]);
    let e = fails(&dir, &["rules", "enable", "9"]);
    assert!(e.contains("no rule at position 9 (there are 2 rules, numbered from 1)"), "{e}");
    let e = fails(&dir, &["rules", "enable", "0"]);
    assert!(e.contains("no rule at position 0"), "{e}");
}

#[test]
fn organisation_wide_asf_options_are_listed_set_and_judged_with_and_bad_ones_refused() {
    let dir = temp_dir("asf");
    create_store(&dir);
    let bug = dir.join("web-bug.eml");
    std::fs::write(
        &bug,
        "From: news@sender.example\r\nTo: bob@example.com\r\nSubject: news\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/html\r\n\r\n<html><body><p>News.</p><img src=\"http://t.sender.example/o.gif\" \
         width=\"1\" height=\"1\"></body></html>\r\n",
    )
    .unwrap();
    let bug = bug.to_str().unwrap();
    let mode_of = |dir: &Path, option: &str| {
        let all: serde_json::Value = serde_json::from_str(&ok(dir, &["asf", "list", "--json"])).unwrap();
        let o = all.as_array().unwrap().iter().find(|o| o["option"] == option).unwrap().clone();
        (o["mode"].as_str().unwrap().to_string(), o["stored"].clone())
    };
    assert_eq!(mode_of(&dir, "web_bugs"), ("off".into(), serde_json::Value::Null));
    // (`scan` answers 1 for spam, as spamc does: stdout says why.)
    let scan = |dir: &Path| String::from_utf8(run(dir, &["scan", bug], None).stdout).unwrap();
    let line = scan(&dir);
    let fields: Vec<&str> = line.trim_end().split('\t').collect();
    assert!(fields.len() >= 3 && fields[0] == bug && fields[1].parse::<f64>().is_ok(), "a verdict line: {line}");
    assert!(!scan(&dir).contains("ASF_WEB_BUGS"), "off: not scored");

    let said = ok(&dir, &["asf", "set", "web_bugs=on", "empty_messages=test"]);
    assert!(said.contains("empty_messages=test, web_bugs=on"), "{said}");
    assert_eq!(mode_of(&dir, "web_bugs"), ("on".into(), serde_json::json!("on")));
    let text = ok(&dir, &["asf", "list"]);
    let line = text.lines().find(|l| l.starts_with("web_bugs ")).unwrap();
    assert!(line.contains("on") && line.contains("database (configuration: off)"), "{line}");
    let scanned = scan(&dir);
    assert!(scanned.contains("ASF_WEB_BUGS"), "the command-line scan judges as the gateway: {scanned}");

    let dump = ok(&dir, &["config", "dump"]);
    assert!(dump.contains("# asf.web_bugs = \"on\""), "config dump says what the database sets: {dump}");

    // All or nothing, the bad part named.
    let err = fails(&dir, &["asf", "set", "web_bugs=off", "iframe=on"]);
    assert!(err.contains("no ASF option \"iframe\""), "{err}");
    let err = fails(&dir, &["asf", "set", "web_bugs=sometimes"]);
    assert!(err.contains("\"sometimes\" is not a mode"), "{err}");
    assert_eq!(mode_of(&dir, "web_bugs").0, "on", "nothing changed");
    // `default` hands the option back to the configuration file; the organisation's row is no domain.
    ok(&dir, &["asf", "set", "web_bugs=default"]);
    assert_eq!(mode_of(&dir, "web_bugs"), ("off".into(), serde_json::Value::Null));
    assert!(!ok(&dir, &["domains", "list"]).contains('*'));
    let err = fails(&dir, &["domains", "set", "*", "--asf", "web_bugs=on"]);
    assert!(err.contains("is not a domain name"), "{err}");
}
