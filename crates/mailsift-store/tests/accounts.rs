//! Console accounts and settings on a real SQLite file and a real PostgreSQL: names unique ignoring case, a user's name is their
//! lowercased address, a domain administrator carries their domains, the hash is kept but never serialized,
//! ids are not reused, and everything survives a restart.

use mailsift_store::gateway::SCHEMA_VERSION;
use mailsift_store::{Account, Database, Role, StoreError};

const T0: i64 = 1_800_000_000;

/// Runs `body` on each backend: SQLite in a temporary directory, then PostgreSQL (a private server of the
/// test's own; without PostgreSQL installed only SQLite runs, and under CI=true the test fails).
fn on_every_backend(body: impl Fn(&Database)) {
    let dir = tempfile::tempdir().unwrap();
    body(&Database::open_in(dir.path()).unwrap());
    if let Some(pg) = mailsift_testkit::postgres::Postgres::start() {
        body(&Database::open_postgres(&mailsift_store::pg::PgConfig::new(pg.url())).unwrap());
    }
}

fn domains(ds: &[&str]) -> Vec<String> {
    ds.iter().map(|d| d.to_string()).collect()
}

#[test]
fn roles_have_stable_names() {
    for role in [Role::Admin, Role::DomainAdmin, Role::User] {
        assert_eq!(Role::parse(role.as_str()), Some(role));
        assert_eq!(serde_json::to_string(&role).unwrap(), format!("\"{}\"", role.as_str()));
    }
    assert_eq!(Role::DomainAdmin.as_str(), "domain_admin");
    assert_eq!(Role::parse("Admin"), None);
    assert_eq!(Role::parse("root"), None);
}

#[test]
fn an_administrator_a_domain_administrator_and_a_user_are_added_and_read_back() {
    on_every_backend(|db| {
        const { assert!(SCHEMA_VERSION >= 5) };
        assert_eq!(db.accounts().unwrap(), []);

        let admin =
            db.account_add("Root", Role::Admin, &[], "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", T0).unwrap();
        let dadmin = db
            .account_add(
                "  Ops ",
                Role::DomainAdmin,
                &domains(&["Example.NET", "@shop.example", "example.net"]),
                "",
                T0,
            )
            .unwrap();
        let user = db.account_add("Bob@Example.NET", Role::User, &[], "", T0 + 5).unwrap();
        assert!(admin < dadmin && dadmin < user);

        let root = db.account_get("root").unwrap().unwrap();
        assert_eq!(
            root,
            Account {
                id: admin,
                name: "Root".into(),
                role: Role::Admin,
                domains: vec![],
                password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
                created: T0,
                disabled: false,
            }
        );
        let ops = db.account_get("OPS").unwrap().unwrap();
        assert_eq!(ops.name, "Ops", "trimmed, case kept");
        assert_eq!(ops.domains, ["example.net", "shop.example"], "lowercased, without @, once each");
        assert_eq!(ops.password_hash, "", "no password: digest links only");
        let bob = db.account_get(" bob@example.net").unwrap().unwrap();
        assert_eq!(bob.name, "bob@example.net", "a user's name is their address, lowercased");
        assert_eq!(bob.role, Role::User);
        assert_eq!(bob.created, T0 + 5);

        assert_eq!(db.account_by_id(dadmin).unwrap().unwrap(), ops);
        assert_eq!(db.account_by_id(9_999).unwrap(), None);
        assert_eq!(db.account_get("nobody").unwrap(), None);
        let names: Vec<String> = db.accounts().unwrap().into_iter().map(|a| a.name).collect();
        assert_eq!(names, ["bob@example.net", "Ops", "Root"], "by name, ignoring case");
    });
}

#[test]
fn a_name_that_exists_ignoring_case_is_refused_clearly() {
    on_every_backend(|db| {
        db.account_add("Root", Role::Admin, &[], "h", T0).unwrap();
        let e = db.account_add("ROOT", Role::Admin, &[], "other", T0).unwrap_err();
        assert!(matches!(e, StoreError::Exists { .. }), "{e:?}");
        let text = e.to_string();
        assert!(text.contains("ROOT") && text.contains("already exists"), "{text}");
        assert!(text.contains(&db.path().display().to_string()), "names the database: {text}");
        // The first one is untouched.
        assert_eq!(db.account_get("root").unwrap().unwrap().password_hash, "h");

        db.account_add("carol@example.net", Role::User, &[], "", T0).unwrap();
        let e = db.account_add("Carol@EXAMPLE.net", Role::User, &[], "", T0).unwrap_err();
        assert!(matches!(e, StoreError::Exists { .. }), "{e:?}");
        assert_eq!(db.accounts().unwrap().len(), 2);
    });
}

#[test]
fn scopes_that_would_mean_something_else_are_refused() {
    on_every_backend(|db| {
        // A domain administrator without domains would be scoped to nothing (or, passed as an empty scope, to
        // everything): refused.
        let e = db.account_add("ops", Role::DomainAdmin, &[], "", T0).unwrap_err().to_string();
        assert!(e.contains("at least one domain"), "{e}");
        let e = db.account_add("ops", Role::DomainAdmin, &domains(&[" ", "@"]), "", T0).unwrap_err().to_string();
        assert!(e.contains("at least one domain"), "{e}");
        let e = db.account_add("root", Role::Admin, &domains(&["example.net"]), "", T0).unwrap_err().to_string();
        assert!(e.contains("only a domain administrator has domains"), "{e}");
        let e = db.account_add("  ", Role::Admin, &[], "", T0).unwrap_err().to_string();
        assert!(e.contains("needs a name"), "{e}");
        assert_eq!(db.accounts().unwrap(), []);
    });
}

#[test]
fn passwords_are_changed_accounts_disabled_and_removed_and_ids_never_come_back() {
    on_every_backend(|db| {
        let first = db.account_add("root", Role::Admin, &[], "old", T0).unwrap();

        assert!(db.account_set_password("ROOT", "new").unwrap());
        assert_eq!(db.account_get("root").unwrap().unwrap().password_hash, "new");
        assert!(db.account_set_password("root", "").unwrap());
        assert_eq!(db.account_get("root").unwrap().unwrap().password_hash, "");
        assert!(!db.account_set_password("nobody", "x").unwrap());

        assert!(db.account_set_disabled("Root", true).unwrap());
        assert!(db.account_get("root").unwrap().unwrap().disabled);
        assert!(db.account_set_disabled("root", false).unwrap());
        assert!(!db.account_get("root").unwrap().unwrap().disabled);
        assert!(!db.account_set_disabled("nobody", true).unwrap());

        assert!(db.account_remove("ROOT").unwrap());
        assert!(!db.account_remove("root").unwrap());
        assert_eq!(db.account_get("root").unwrap(), None);
        assert_eq!(db.account_by_id(first).unwrap(), None);
        // A session naming the old id must not find the new account.
        let second = db.account_add("root", Role::Admin, &[], "", T0).unwrap();
        assert!(second > first);
    });
}

#[test]
fn the_hash_is_never_serialized_and_an_account_reads_back_without_it() {
    on_every_backend(|db| {
        db.account_add("ops", Role::DomainAdmin, &domains(&["example.net"]), "$argon2id$secret", T0).unwrap();
        let ops = db.account_get("ops").unwrap().unwrap();
        let json = serde_json::to_string(&ops).unwrap();
        assert!(!json.contains("secret") && !json.contains("password"), "{json}");
        assert!(json.contains("\"role\":\"domain_admin\""), "{json}");
        assert!(json.contains("\"domains\":[\"example.net\"]"), "{json}");
        let back: Account = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Account { password_hash: String::new(), ..ops });
    });
}

#[test]
fn accounts_and_settings_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::open_in(dir.path()).unwrap();
        db.account_add("root", Role::Admin, &[], "h", T0).unwrap();
        assert_eq!(db.setting_get("digest.last_id").unwrap(), None);
        db.setting_put("digest.last_id", "41").unwrap();
        db.setting_put("digest.last_id", "42").unwrap();
        db.setting_put("session.key_id", "k1").unwrap();
    }
    let db = Database::open_in(dir.path()).unwrap();
    assert_eq!(db.account_get("root").unwrap().unwrap().password_hash, "h");
    assert_eq!(db.setting_get("digest.last_id").unwrap().as_deref(), Some("42"), "replaced, not added");
    assert_eq!(db.setting_get("session.key_id").unwrap().as_deref(), Some("k1"));
    assert_eq!(db.setting_get("Digest.last_id").unwrap(), None, "keys are exact");
}

#[test]
fn a_version_4_file_gains_the_tables_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailsift.sqlite");
    {
        let db = Database::open(&path).unwrap();
        db.domain_put("example.net", "{}", T0).unwrap();
    }
    // Take the file back to version 4 (no accounts, settings, spool, leases or web sessions yet), as an older
    // mailsift left it: every table of a later migration goes.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "DROP TABLE dmarc_received; DROP TABLE dmarc_rows; DROP TABLE web_login_failures; DROP TABLE web_sessions; \
         DROP TABLE leases; DROP TABLE spool; DROP TABLE accounts; DROP TABLE settings; PRAGMA user_version = 4;",
    )
    .unwrap();
    drop(conn);

    let db = Database::open(&path).unwrap();
    assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(db.domain_get("example.net").unwrap().as_deref(), Some("{}"));
    db.account_add("root", Role::Admin, &[], "", T0).unwrap();
    db.setting_put("k", "v").unwrap();
}
