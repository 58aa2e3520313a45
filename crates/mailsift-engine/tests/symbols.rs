//! Typed symbols: the `Sym` constants and the spec tables are the same set (every constant registered
//! exactly once, every built-in spec has a constant), and the roles the diagnosis reads are declared.

use std::collections::{BTreeMap, BTreeSet};

use mailsift_engine::catalogue::{builtin_tables, sym};
use mailsift_engine::symbols::{FixKind, Group, Side};
use mailsift_engine::{Engine, EngineConfig};

#[test]
fn every_constant_is_registered_exactly_once_and_every_spec_has_a_constant() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let mut constants: BTreeMap<&str, usize> = BTreeMap::new();
    for module in sym::ALL {
        for s in *module {
            *constants.entry(s.name()).or_default() += 1;
        }
    }
    for (name, n) in &constants {
        assert_eq!(*n, 1, "{name} is declared as a constant {n} times");
    }
    let mut specs: BTreeMap<&str, usize> = BTreeMap::new();
    for table in builtin_tables() {
        for s in table {
            *specs.entry(s.name).or_default() += 1;
        }
    }
    for (name, n) in &specs {
        assert_eq!(*n, 1, "{name} is in the spec tables {n} times");
        assert!(constants.contains_key(name), "the spec {name} has no Sym constant");
    }
    for name in constants.keys() {
        assert!(specs.contains_key(name), "the constant {name} is in no spec table");
        let def = engine.registry().by_name(name).unwrap_or_else(|| panic!("{name} is not registered"));
        assert_eq!(def.name, *name);
    }
    assert!(constants.len() > 130, "only {} constants: is a module missing from sym::ALL?", constants.len());
}

#[test]
fn a_constant_is_its_name() {
    assert_eq!(sym::HTML_IFRAME.name(), "HTML_IFRAME");
    assert_eq!(sym::SPOOF_OWN_DOMAIN.to_string(), "SPOOF_OWN_DOMAIN");
    assert!("DKIM_VALID" == sym::DKIM_VALID);
    assert!(String::from("POLICY_RULE") == sym::POLICY_RULE);
    assert!("POLICY_RULE" != sym::POLICY_BLOCKED_SENDER);
    assert_eq!(sym::MIME_LIMIT_EXCEEDED.name(), "MIME_LIMIT_EXCEEDED");
}

#[test]
fn roles_are_declared_in_the_tables() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let reg = engine.registry();
    let role = |s: mailsift_engine::symbols::Sym| reg.role_of(s.name()).unwrap();
    // Our own domain's configuration, not the sender's.
    assert_eq!(role(sym::SPOOF_OWN_DOMAIN).side, Side::OwnConfiguration);
    assert_eq!(role(sym::OWN_SERVER_NOT_IN_DNS).side, Side::OwnConfiguration);
    assert_eq!(role(sym::SPOOF_OWN_DOMAIN).fix, FixKind::OwnDns);
    // The sender's practices and authentication, each with the fix it implies.
    assert_eq!(
        role(sym::RDNS_NONE),
        mailsift_engine::symbols::Role { side: Side::SenderPractice, fix: FixKind::PublishPtr }
    );
    assert_eq!(role(sym::SPF_FAIL).side, Side::SenderAuth);
    assert_eq!(role(sym::SPF_FAIL).fix, FixKind::SpfListServer);
    assert_eq!(role(sym::DMARC_POLICY_REJECT).fix, FixKind::DmarcAlign);
    assert_eq!(role(sym::DMARC_POLICY_NONE).fix, FixKind::DmarcAlign);
    assert_eq!(role(sym::DKIM_BODY_MODIFIED).fix, FixKind::DkimSignAfterChanges);
    assert_eq!(role(sym::ARC_INVALID).fix, FixKind::TrustArcSealers);
    // Policy, ASF, content, tests.
    assert_eq!(
        role(sym::POLICY_BLOCKED_SENDER),
        mailsift_engine::symbols::Role { side: Side::Policy, fix: FixKind::RemoveBlock }
    );
    assert_eq!(role(sym::POLICY_RULE).fix, FixKind::EditRule);
    assert_eq!(role(sym::ASF_JS_VBS).side, Side::AsfOption);
    assert_eq!(role(sym::HTML_IFRAME).side, Side::Content);
    assert_eq!(role(sym::BAYES_SPAM_99).fix, FixKind::Report);
    assert_eq!(role(sym::GTUBE).side, Side::Test);
    assert_eq!(reg.role_of("NO_SUCH_SYMBOL"), None);

    // Every symbol of the sender's families is on the sender's side (the diagnosis weighs them as one);
    // every fix kind the diagnosis words for a sender is declared on some symbol.
    let mut fixes = BTreeSet::new();
    for d in reg.iter() {
        let r = reg.role_of(&d.name).unwrap();
        fixes.insert(format!("{:?}", r.fix));
        let senders = matches!(d.group, Group::Connection | Group::Auth | Group::Reputation);
        assert_eq!(r.side.is_senders(), senders, "{}: side {:?} in group {:?}", d.name, r.side, d.group);
        if r.fix.about().is_some() {
            assert_eq!(r.side, Side::SenderAuth, "{}: a fix about a domain's DNS is authentication's", d.name);
        }
    }
    for f in [
        FixKind::PublishPtr,
        FixKind::ConfirmPtr,
        FixKind::StaticServer,
        FixKind::HeloFullName,
        FixKind::HeloNotBareIp,
        FixKind::HeloInPtrDomain,
        FixKind::HeloLiteralMatch,
        FixKind::SpfListServer,
        FixKind::SpfListServerSoft,
        FixKind::SpfRepair,
        FixKind::SpfPublish,
        FixKind::DkimSignAfterChanges,
        FixKind::DkimCheckKey,
        FixKind::DkimPublishKey,
        FixKind::DkimRenew,
        FixKind::DmarcAlign,
        FixKind::OwnDns,
        FixKind::TrustArcSealers,
        FixKind::AsfOption,
        FixKind::EditRule,
        FixKind::RemoveBlock,
        FixKind::AllowEntry,
        FixKind::Report,
        FixKind::Describe,
    ] {
        assert!(fixes.contains(&format!("{f:?}")), "no symbol declares {f:?}");
    }
}

#[test]
fn configured_symbols_take_their_groups_role() {
    // A DNS list's symbol is defined by configuration: it has no constant and takes its group's role.
    let cfg: EngineConfig = toml::from_str(
        r#"
        [[dnsbl]]
        zone = "list.example"
        symbol = "LISTED_EXAMPLE"
        weight = 2.0
        "#,
    )
    .unwrap();
    let engine = Engine::new(cfg).unwrap();
    let r = engine.registry().role_of("LISTED_EXAMPLE").unwrap();
    assert_eq!(r.side, Side::SenderPractice);
    assert_eq!(r.fix, FixKind::Describe);
}
