//! The registry is complete and documented: every symbol a check can emit is registered, and every symbol
//! has a description and a remedy.

use mailsift_engine::{Engine, EngineConfig};

const CHECK_SOURCES: &[(&str, &str)] = &[
    ("asf.rs", include_str!("../src/checks/asf.rs")),
    ("attachments.rs", include_str!("../src/checks/attachments.rs")),
    ("auth.rs", include_str!("../src/checks/auth.rs")),
    ("connection.rs", include_str!("../src/checks/connection.rs")),
    ("classifier.rs", include_str!("../src/checks/classifier.rs")),
    ("content.rs", include_str!("../src/checks/content.rs")),
    ("headers.rs", include_str!("../src/checks/headers.rs")),
    ("html.rs", include_str!("../src/checks/html.rs")),
    ("obfuscation.rs", include_str!("../src/checks/obfuscation.rs")),
    ("reputation.rs", include_str!("../src/checks/reputation.rs")),
    ("rules.rs", include_str!("../src/checks/rules.rs")),
    ("urls.rs", include_str!("../src/checks/urls.rs")),
    ("message/limits.rs", include_str!("../src/message/limits.rs")),
];

#[test]
fn every_emitted_symbol_is_registered() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let re = regex::Regex::new(r#"hit\(\s*(?:[a-z_]+::)*([A-Z][A-Z0-9_]+)\b"#).unwrap();
    let mut seen = 0;
    for (file, src) in CHECK_SOURCES {
        for cap in re.captures_iter(src) {
            seen += 1;
            assert!(engine.registry().id(&cap[1]).is_some(), "{file} emits unregistered symbol {}", &cap[1]);
        }
    }
    assert!(seen > 60, "only {seen} emissions found: has the hit() call changed shape?");
}

#[test]
fn every_symbol_is_documented() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    for d in engine.registry().iter() {
        assert!(!d.description.is_empty(), "{} has no description", d.name);
        assert!(!d.remedy.is_empty(), "{} has no remedy", d.name);
        assert!(d.name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'), "{}", d.name);
    }
    assert!(engine.registry().len() > 80);
}
