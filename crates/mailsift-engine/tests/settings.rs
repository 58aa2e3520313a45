//! Per-domain settings in one engine: a message judged by the base engine with a domain's `Settings` gets
//! exactly the verdict the gateway's per-domain engine gave (an `Engine` built from the configuration with
//! the domain's thresholds and ASF options applied through a `toml::Value` round trip, as
//! `DomainConfig::apply_overrides` did), on every labelled message of `../shared/testdata/messages` and on
//! two real signed messages with their DNS evidence (a mailing-list message and a forwarded one). Weight
//! overrides and composites switched by settings match an engine configured with the same `[weights]` and
//! `[[composites]]`. And settings are checked against the engine: an unknown name is an error naming it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use mailsift_engine::config::{AsfMode, DnsConfig, Thresholds};
use mailsift_engine::evidence::SpfResult;
use mailsift_engine::{Engine, EngineConfig, Envelope, Evidence, SettingsConfig, Verdict};
use mailsift_evidence::SenderGatherer;
use mailsift_testkit::dns::{TestDns, Zone};

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata")
}

/// Every labelled message, with the envelope and evidence each is judged with (SPF varies so the auth
/// composites and ASF's SPF option have something to act on).
fn messages() -> Vec<(String, Vec<u8>, Envelope, Evidence)> {
    let mut out = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(testdata().join("messages"))
        .expect("testdata/messages")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    names.sort();
    for (i, p) in names.iter().enumerate() {
        let raw = std::fs::read(p).unwrap();
        let env = Envelope {
            client_ip: Some(format!("198.51.100.{}", 1 + i % 200).parse().unwrap()),
            helo: Some("mail.sender.test".into()),
            mail_from: Some("someone@sender.test".into()),
            rcpt_to: vec!["user@customer.test".into()],
            ..Envelope::default()
        };
        let spf = [None, Some(SpfResult::Fail), Some(SpfResult::Pass), Some(SpfResult::SoftFail)][i % 4];
        let ev = Evidence { spf, ..Evidence::default() };
        out.push((p.file_name().unwrap().to_string_lossy().into_owned(), raw, env, ev));
    }
    assert!(out.len() >= 50, "only {} messages in testdata/messages", out.len());
    out
}

/// The per-domain engine as the gateway built it: thresholds replaced, ASF options through a TOML value.
fn domain_engine_config(
    base: &EngineConfig,
    thresholds: &Option<Thresholds>,
    asf: &BTreeMap<String, AsfMode>,
) -> EngineConfig {
    let mut config = base.clone();
    if let Some(t) = thresholds {
        config.thresholds = t.clone();
    }
    if !asf.is_empty() {
        let mut table = toml::Value::try_from(&config.asf).unwrap();
        for (option, mode) in asf {
            table.as_table_mut().unwrap().insert(option.clone(), toml::Value::try_from(mode).unwrap());
        }
        config.asf = table.try_into().unwrap();
    }
    config
}

/// The verdict without its reference id (new per verdict), as JSON, so every other field is compared.
fn comparable(v: &Verdict) -> serde_json::Value {
    let mut j = serde_json::to_value(v).unwrap();
    j.as_object_mut().unwrap().remove("id");
    j
}

const BASE: &str = r#"
[organisation]
domains = ["customer.test"]

[asf]
frame_or_iframe_tags = "on"
numeric_ip_in_url = "test"
bulk_mail = "on"

[weights]
URL_SHORTENER = 1.5
"#;

fn all_asf(mode: AsfMode) -> BTreeMap<String, AsfMode> {
    mailsift_engine::config::AsfConfig::OPTIONS.iter().map(|o| (o.to_string(), mode)).collect()
}

/// The domains' overrides the equivalence is checked for.
fn domains() -> Vec<(&'static str, Option<Thresholds>, BTreeMap<String, AsfMode>)> {
    let strict = Thresholds { tag: 2.0, quarantine: 4.0, reject: 6.0 };
    let lax = Thresholds { tag: 9.0, quarantine: 20.0, reject: 40.0 };
    let mixed: BTreeMap<String, AsfMode> = [
        ("frame_or_iframe_tags", AsfMode::Off),
        ("bulk_mail", AsfMode::Test),
        ("spf_hard_fail", AsfMode::On),
        ("javascript_or_vbscript_in_html", AsfMode::On),
        ("empty_messages", AsfMode::On),
        ("url_to_biz_or_info", AsfMode::Test),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    vec![
        ("strict.test", Some(strict.clone()), BTreeMap::new()),
        ("lax.test", Some(lax), BTreeMap::new()),
        ("all-on.test", None, all_asf(AsfMode::On)),
        ("all-test.test", Some(strict), all_asf(AsfMode::Test)),
        ("all-off.test", None, all_asf(AsfMode::Off)),
        ("mixed.test", None, mixed),
        ("same.test", Some(Thresholds::default()), BTreeMap::from([("bulk_mail".to_string(), AsfMode::On)])),
    ]
}

#[test]
fn a_domains_settings_judge_as_its_own_engine_did() {
    let base_config = EngineConfig::from_toml(BASE).unwrap();
    let engine = Engine::new(base_config.clone()).unwrap();
    let messages = messages();
    let (mut compared, mut differing_from_base) = (0, 0);
    for (domain, thresholds, asf) in domains() {
        let reference = Engine::new(domain_engine_config(&base_config, &thresholds, &asf)).unwrap();
        let settings = engine
            .settings(
                domain,
                &SettingsConfig { thresholds: thresholds.clone(), asf: asf.clone(), ..Default::default() },
            )
            .unwrap();
        for (name, raw, env, ev) in &messages {
            let msg = engine.parse(raw);
            let want = reference.judge(&msg, env, ev);
            let got = engine.judge_with_settings(&msg, env, ev, engine.policy(), &settings);
            assert_eq!(comparable(&got), comparable(&want), "{domain}: {name}");
            let plain = engine.judge(&msg, env, ev);
            if comparable(&plain) != comparable(&got) {
                differing_from_base += 1;
            }
            compared += 1;
        }
    }
    // The settings did change verdicts (the comparison is not between two copies of the base engine).
    assert!(differing_from_base > 100, "only {differing_from_base} of {compared} verdicts differ from the base's");
    eprintln!("{compared} verdicts identical to the per-domain engine's; {differing_from_base} differ from the base's");
}

#[test]
fn weights_and_composites_in_settings_judge_as_configured_ones() {
    let base_config = EngineConfig::from_toml(BASE).unwrap();
    let engine = Engine::new(base_config.clone()).unwrap();
    let overrides = SettingsConfig {
        weights: BTreeMap::from([
            ("SPF_FAIL".to_string(), 4.0),
            ("HTML_IFRAME".to_string(), 2.5),
            ("URL_SHORTENER".to_string(), 0.0),
            ("FORWARDED_AUTHOR_SIGNED".to_string(), -0.5),
        ]),
        composites: BTreeMap::from([("MAILING_LIST_DMARC".to_string(), false)]),
        ..Default::default()
    };
    let settings = engine.settings("weights.test", &overrides).unwrap();
    let mut reference_config = base_config.clone();
    reference_config.weights.extend(overrides.weights.clone());
    reference_config.composites =
        EngineConfig::from_toml("[[composites]]\nname = \"MAILING_LIST_DMARC\"\nenabled = false\n").unwrap().composites;
    let reference = Engine::new(reference_config).unwrap();
    let mut differing = 0;
    for (name, raw, env, ev) in &messages() {
        let msg = engine.parse(raw);
        let got = engine.judge_with_settings(&msg, env, ev, engine.policy(), &settings);
        assert_eq!(comparable(&got), comparable(&reference.judge(&msg, env, ev)), "{name}");
        differing += usize::from(comparable(&got) != comparable(&engine.judge(&msg, env, ev)));
    }
    assert!(differing > 10, "{differing}");
}

/// The real list message and the real forwarded one, with their DNS evidence gathered once and judged
/// both ways (composites acting, ASF's SPF option on for one domain).
#[tokio::test]
async fn real_signed_messages_with_dns_judge_the_same_both_ways() {
    let cases = [
        (
            "arc/mail-auth/001.txt",
            "50.223.129.194",
            "jmap-bounces@ietf.org",
            vec![("_dmarc.stalw.art", "v=DMARC1; p=reject"), ("ietf.org", "v=spf1 ip4:50.223.129.194 -all")],
        ),
        (
            "dkim/mail-auth/006.txt",
            "198.51.100.25",
            "bounces@github.com",
            vec![("_dmarc.github.com", "v=DMARC1; p=reject"), ("github.com", "v=spf1 ip4:192.30.252.0/22 -all")],
        ),
    ];
    for (file, ip, mail_from, extra) in cases {
        let text = std::fs::read_to_string(testdata().join(file)).unwrap();
        let (records, message) = text.split_once("\n\n").unwrap();
        let raw = message.replace("\r\n", "\n").replace('\n', "\r\n");
        let mut zone = Zone::new();
        for line in records.lines() {
            if let Some((n, r)) = line.split_once(' ') {
                zone.txt(n, r);
            }
        }
        for (n, r) in &extra {
            zone.txt(n, r);
        }
        let dns = TestDns::start(zone);
        let mut base_config = EngineConfig::from_toml(BASE).unwrap();
        base_config.dns = DnsConfig {
            enabled: true,
            nameservers: vec![dns.addr().to_string()],
            timeout_ms: 400,
            deadline_ms: 2000,
            ..DnsConfig::default()
        };
        let env = Envelope {
            client_ip: Some(ip.parse().unwrap()),
            helo: Some("mx.sender.test".into()),
            mail_from: Some(mail_from.into()),
            rcpt_to: vec!["user@customer.test".into()],
            ..Envelope::default()
        };
        let facts = SenderGatherer::from_config(&base_config).unwrap().gather(raw.as_bytes(), &env).await;
        let ev = Evidence::from_sender(facts);
        let engine = Engine::new(base_config.clone()).unwrap();
        let mut seen_composite = false;
        for (domain, thresholds, asf) in domains() {
            let reference = Engine::new(domain_engine_config(&base_config, &thresholds, &asf)).unwrap();
            let settings = engine.settings(domain, &SettingsConfig { thresholds, asf, ..Default::default() }).unwrap();
            let msg = engine.parse(raw.as_bytes());
            let got = engine.judge_with_settings(&msg, &env, &ev, engine.policy(), &settings);
            let want = reference.judge(&msg, &env, &ev);
            // The Authentication-Results are the same facts; compare all the rest.
            assert_eq!(comparable(&got), comparable(&want), "{file} for {domain}");
            seen_composite |=
                got.symbols.iter().any(|s| s.name.starts_with("MAILING_LIST_") || s.name == "FORWARDED_AUTHOR_SIGNED");
        }
        assert!(seen_composite, "{file}: no composite acted");
    }
}

#[test]
fn settings_are_checked_against_the_engine() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let bad = |c: SettingsConfig, says: &str| {
        let e = engine.settings("example.test", &c).err().unwrap_or_else(|| panic!("accepted {c:?}")).to_string();
        assert!(e.contains("example.test") && e.contains(says), "{e:?} does not say {says:?}");
    };
    bad(
        SettingsConfig { asf: BTreeMap::from([("no_such_option".into(), AsfMode::On)]), ..Default::default() },
        "asf.no_such_option: no such option",
    );
    bad(
        SettingsConfig { weights: BTreeMap::from([("NO_SUCH_SYMBOL".into(), 1.0)]), ..Default::default() },
        "weights.NO_SUCH_SYMBOL: no such symbol",
    );
    bad(
        SettingsConfig { weights: BTreeMap::from([("SPF_FAIL".into(), f64::NAN)]), ..Default::default() },
        "must be a number",
    );
    bad(
        SettingsConfig { weights: BTreeMap::from([("POLICY_RULE".into(), 1.0)]), ..Default::default() },
        "policy symbols carry no weight",
    );
    bad(
        SettingsConfig { composites: BTreeMap::from([("NO_SUCH".into(), true)]), ..Default::default() },
        "composites.NO_SUCH: no such composite",
    );
    bad(
        SettingsConfig {
            thresholds: Some(Thresholds { tag: 9.0, quarantine: 5.0, reject: 15.0 }),
            ..Default::default()
        },
        "tag <= quarantine <= reject",
    );
    // Empty overrides are the engine's own settings; settings as read from TOML refuse unknown keys.
    let s = engine.settings("plain.test", &SettingsConfig::default()).unwrap();
    assert!(s.is_default() && s.name() == "plain.test");
    let c: SettingsConfig =
        toml::from_str("thresholds = { tag = 1.0, quarantine = 2.0, reject = 3.0 }\n[asf]\nweb_bugs = \"on\"\n")
            .unwrap();
    assert!(!engine.settings("x", &c).unwrap().is_default());
    assert!(toml::from_str::<SettingsConfig>("treshold = 1\n").is_err());
    // ASF options set to what the engine has already need no copy of the configuration.
    let same = SettingsConfig { asf: BTreeMap::from([("web_bugs".into(), AsfMode::Off)]), ..Default::default() };
    assert!(engine.settings("x", &same).unwrap().is_default());
}
