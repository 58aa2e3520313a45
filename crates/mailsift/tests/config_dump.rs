//! `mailsift config dump` as an administrator runs it: the effective configuration (defaults included)
//! reads back as the same configuration, secrets never leave the file, the domains and policy stored in the
//! data directory are marked as such with the precedence the gateway applies, `--non-default` shows only
//! what was changed, and every command names unknown keys by their full path.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailsift"));
    c.env_remove("MAILSIFT_CONFIG").env_remove("MAILSIFT_DATA_DIR").env("MAILSIFT_LOG", "warn");
    c
}

fn temp_dir(name: &str) -> PathBuf {
    mailsift_testkit::temp_dir("mailsift-config-dump", name)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn show(o: &Output) -> String {
    format!("status {:?}\nstdout:\n{}\nstderr:\n{}", o.status.code(), text(&o.stdout), text(&o.stderr))
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// `mailsift --config CONFIG --data-dir DATA ARGS…`, which must succeed; its standard output.
fn run_ok(config: &Path, data: &Path, args: &[&str]) -> String {
    let o = bin().arg("--config").arg(config).arg("--data-dir").arg(data).args(args).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", show(&o));
    text(&o.stdout)
}

fn dump(config: &Path, data: &Path, non_default: bool) -> String {
    let mut args = vec!["config", "dump"];
    if non_default {
        args.push("--non-default");
    }
    run_ok(config, data, &args)
}

/// The dump without its first line, which names the file it was made from.
fn body(dump: &str) -> &str {
    dump.split_once('\n').map_or("", |(_, rest)| rest)
}

#[test]
fn the_production_example_dumps_and_reads_back_as_the_same_configuration() {
    let dir = temp_dir("roundtrip");
    let data = dir.join("data");
    let production = examples().join("production.toml");
    let full = dump(&production, &data, false);
    let changed = dump(&production, &data, true);

    // The dump is TOML, with the file's values and the defaults it did not change.
    let tree: toml::Table = toml::from_str(&full).unwrap_or_else(|e| panic!("{e}\n{full}"));
    assert_eq!(tree["dns"]["enabled"].as_bool(), Some(true), "{full}");
    assert_eq!(tree["smtp"]["hostname"].as_str(), Some("mx.example.com"), "{full}");
    assert_eq!(tree["smtp"]["max_recipients"].as_integer(), Some(100), "a default is shown: {full}");
    assert_eq!(tree["web"]["public_url"].as_str(), Some("https://mailsift.example.com"), "{full}");
    let domains = tree["smtp"]["domains"].as_array().unwrap();
    assert_eq!(domains.len(), 1, "{full}");
    assert_eq!(domains[0]["next_hop"].as_str(), Some("10.0.0.5:25"));
    assert!(full.contains("# source: configuration file\n[[smtp.domains]]"), "{full}");

    // Read back, the dump is the same configuration: its own dump is the same, in both forms.
    let again = dir.join("dumped.toml");
    std::fs::write(&again, &full).unwrap();
    assert_eq!(body(&dump(&again, &data, false)), body(&full));
    assert_eq!(body(&dump(&again, &data, true)), body(&changed));

    // --non-default is what the file changed, and is enough: read back, it is the same configuration too.
    let small: toml::Table = toml::from_str(&changed).unwrap_or_else(|e| panic!("{e}\n{changed}"));
    assert_eq!(small["dns"]["enabled"].as_bool(), Some(true), "{changed}");
    assert!(small["smtp"].get("max_recipients").is_none(), "a default is left out: {changed}");
    assert!(small.get("thresholds").is_none(), "{changed}");
    let from_small = dir.join("non-default.toml");
    std::fs::write(&from_small, &changed).unwrap();
    assert_eq!(body(&dump(&from_small, &data, false)), body(&full));

    // Dumping never creates the data directory or its database.
    assert!(!data.exists());
}

#[test]
fn every_example_loads_and_dumps() {
    let dir = temp_dir("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) == Some("toml") {
            let full = dump(&path, &dir.join("data"), false);
            toml::from_str::<toml::Table>(&full).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            seen += 1;
        }
    }
    assert!(seen >= 1);
}

#[test]
fn secrets_never_appear_in_a_dump() {
    let dir = temp_dir("secrets");
    let data = dir.join("data");
    // A real Argon2id hash, as an administrator makes it.
    let mut child = bin()
        .arg("auth-hash")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"correct horse battery staple\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let hash = text(&o.stdout).trim().to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let config = dir.join("mailsift.toml");
    std::fs::write(
        &config,
        format!(
            "[smtp]\nhostname = \"mx.acme.test\"\n\n[[smtp.users]]\nname = \"app\"\npassword = \"{hash}\"\n\n\
             [[smtp.users]]\nname = \"printer\"\npassword = \"{hash}\"\n"
        ),
    )
    .unwrap();
    let salt_and_digest = hash.rsplit('$').next().unwrap().to_string();
    for non_default in [false, true] {
        let out = dump(&config, &data, non_default);
        for secret in [hash.as_str(), salt_and_digest.as_str(), "argon2", "correct horse"] {
            assert!(!out.contains(secret), "{secret} in the dump:\n{out}");
        }
        let tree: toml::Table = toml::from_str(&out).unwrap();
        let users = tree["smtp"]["users"].as_array().unwrap();
        assert_eq!(users.len(), 2, "{out}");
        for u in users {
            assert_eq!(u["password"].as_str(), Some("<hidden>"), "{out}");
        }
        assert_eq!(users[0]["name"].as_str(), Some("app"), "names are not secrets: {out}");
    }
}

#[test]
fn a_stored_domain_is_marked_as_the_database_s_and_replaces_the_file_s() {
    let dir = temp_dir("stored");
    let data = dir.join("data");
    let config = dir.join("mailsift.toml");
    std::fs::write(
        &config,
        "[[smtp.domains]]\nname = \"acme.test\"\nnext_hop = \"10.0.0.5:25\"\nspamtraps = [\"trap@acme.test\"]\n\n\
         [[smtp.domains]]\nname = \"other.test\"\nnext_hop = \"10.0.0.6:25\"\n\n\
         [[policy.allow]]\nsender = \"partner.example\"\n",
    )
    .unwrap();
    // Before anything is stored, both domains are the file's.
    let before = dump(&config, &data, false);
    assert_eq!(before.matches("# source: configuration file\n[[smtp.domains]]").count(), 2, "{before}");
    assert!(!before.contains("# source: database"), "{before}");

    // The administrator stores acme.test (another case) with another next hop, and a blocked sender (in a
    // gateway database: only serve, init and `store create` make one).
    run_ok(&config, &data, &["store", "create"]);
    run_ok(&config, &data, &["domains", "set", "ACME.test", "--next-hop", "10.9.9.9:25"]);
    run_ok(&config, &data, &["lists", "add", "block", "spammer.example"]);

    for non_default in [false, true] {
        let out = dump(&config, &data, non_default);
        let tree: toml::Table = toml::from_str(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
        // In effect: the file's other.test, then the stored acme.test, whole (the file's spamtrap is gone).
        let domains = tree["smtp"]["domains"].as_array().unwrap();
        let effective: Vec<(String, String)> = domains
            .iter()
            .map(|d| (d["name"].as_str().unwrap().to_ascii_lowercase(), d["next_hop"].as_str().unwrap().to_string()))
            .collect();
        assert_eq!(
            effective,
            vec![("other.test".into(), "10.0.0.6:25".into()), ("acme.test".into(), "10.9.9.9:25".into())],
            "{out}"
        );
        assert!(
            domains[1].get("spamtraps").is_none_or(|t| t.as_array().is_some_and(|a| a.is_empty())),
            "the stored domain replaces the file's whole: {out}"
        );
        // Marked: the stored entry says where it comes from and what it replaces; the file's is shown, not
        // in effect.
        let stored_at = out.find("# source: database, replaces the configuration file's entry").expect(&out);
        assert!(out[stored_at..].lines().nth(1) == Some("[[smtp.domains]]"), "{out}");
        assert!(out.contains("replaced by the database's entry for"), "{out}");
        assert!(out.contains("# next_hop = \"10.0.0.5:25\""), "{out}");
        assert!(!out.lines().any(|l| l.starts_with("next_hop = \"10.0.0.5:25\"")), "{out}");
        // The precedence is said once.
        assert!(out.contains("A stored\n# domain replaces a configured one of the same name"), "{out}");

        // Policy: both sources apply, the file's first.
        let file_entry = out.find("# source: configuration file\n[[policy.allow]]").expect(&out);
        let stored_entry = out.find("# source: database\n[[policy.block]]").expect(&out);
        assert!(file_entry < stored_entry, "{out}");
        assert_eq!(tree["policy"]["allow"][0]["sender"].as_str(), Some("partner.example"), "{out}");
        assert_eq!(tree["policy"]["block"][0]["sender"].as_str(), Some("spammer.example"), "{out}");
    }
}

#[test]
fn non_default_on_an_empty_configuration_prints_only_its_header() {
    let dir = temp_dir("empty");
    let config = dir.join("empty.toml");
    std::fs::write(&config, "# nothing set\n").unwrap();
    let out = dump(&config, &dir.join("data"), true);
    assert!(out.starts_with("# mailsift config dump --non-default"), "{out}");
    for line in out.lines() {
        assert!(line.is_empty() || line.starts_with('#'), "{line:?} in\n{out}");
    }
    // Without --non-default, the same empty file shows every default.
    let full = dump(&config, &dir.join("data"), false);
    let tree: toml::Table = toml::from_str(&full).unwrap();
    for table in ["thresholds", "dns", "smtp", "web", "classifier", "reputation"] {
        assert!(tree.contains_key(table), "{table}: {full}");
    }
    // And without any file: the embedded defaults, the same.
    let o = bin().arg("--data-dir").arg(dir.join("data")).args(["config", "dump"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(body(&text(&o.stdout)), body(&full));
}

#[test]
fn unknown_keys_are_named_with_their_table_by_every_command() {
    let dir = temp_dir("unknown");
    let config = dir.join("typos.toml");
    std::fs::write(
        &config,
        "[smtp]\nhostname = \"mx.acme.test\"\nmax_recipents = 50\n\n[smtp.tls]\nenabled = false\n\n\
         [frobnicate]\nx = 1\n\n[web]\ndigest = { enabled = true, intervl_hours = 2 }\n",
    )
    .unwrap();
    let message = dir.join("m.eml");
    std::fs::write(&message, "From: a@b.test\r\nSubject: hi\r\n\r\nhello\r\n").unwrap();
    let commands: [&[&str]; 4] =
        [&["config", "dump"], &["config", "check"], &["scan", message.to_str().unwrap()], &["symbols"]];
    for args in commands {
        let o = bin().arg("--config").arg(&config).arg("--data-dir").arg(dir.join("data")).args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", show(&o));
        let err = text(&o.stderr);
        for name in ["`smtp.max_recipents` (line 3)", "`frobnicate` (line 8)", "`web.digest.intervl_hours` (line 12)"] {
            assert!(err.contains(name), "{args:?}: {name} not named: {err}");
        }
        assert!(err.contains("typos.toml"), "{err}");
        assert!(text(&o.stdout).is_empty(), "{args:?}: {}", show(&o));
    }
}
