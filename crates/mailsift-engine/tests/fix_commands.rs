//! Fix commands are rendered from the structured change by one function, `diagnose::render_command`;
//! the text is the one the CLI accepts.

use mailsift_engine::config::AsfMode;
use mailsift_engine::diagnose::{render_command, Change, Source};
use mailsift_engine::policy::{AllowEntry, BlockAction, BlockEntry};

fn block(action: BlockAction) -> BlockEntry {
    BlockEntry {
        id: None,
        sender: "spam@bad.example".into(),
        recipient: Some("bob@example.com".into()),
        action,
        expires: None,
        comment: Some("ignored by the command".into()),
    }
}

#[test]
fn every_change_renders_its_command() {
    let c = Change::AddSendingServer { domain: "example.com".into(), server: "192.0.2.7".into() };
    assert_eq!(render_command(&c, None), "mailsift domains set example.com --sending-server 192.0.2.7");
    let c = Change::SetAsf { domain: "example.com".into(), option: "web_bugs".into(), mode: AsfMode::Test };
    assert_eq!(render_command(&c, None), "mailsift domains set example.com --asf web_bugs=test");
    let c = Change::RemoveEntry { id: "a1b2".into() };
    assert_eq!(render_command(&c, None), "mailsift lists rm a1b2");
    let c = Change::AddBlock { entry: block(BlockAction::Quarantine) };
    assert_eq!(render_command(&c, None), "mailsift lists add block spam@bad.example --recipient bob@example.com");
    let c = Change::AddBlock { entry: block(BlockAction::Reject) };
    assert!(render_command(&c, None).ends_with(" --action reject"));
    let entry: AllowEntry = toml::from_str(
        "sender = \"news@shop.example\"\nrecipient = \"bob@example.com\"\nrequire_auth = true\nfrom_network = \"198.51.100.0/24\"",
    )
    .unwrap();
    assert_eq!(
        render_command(&Change::AddAllow { entry }, None),
        "mailsift lists add allow news@shop.example --recipient bob@example.com --require-auth --from-network 198.51.100.0/24"
    );
}

#[test]
fn a_report_names_the_message_by_its_source() {
    let fp = Change::Report { spam: false };
    let fnr = Change::Report { spam: true };
    let file = Source::File("/tmp/a message.eml".into());
    assert_eq!(render_command(&fp, Some(&file)), "mailsift report --false-positive '/tmp/a message.eml'");
    assert_eq!(render_command(&fnr, Some(&file)), "mailsift report --false-negative '/tmp/a message.eml'");
    assert_eq!(render_command(&fp, Some(&Source::Quarantine(42))), "mailsift quarantine release 42 --not-spam");
    assert_eq!(
        render_command(&fnr, Some(&Source::Quarantine(42))),
        "mailsift report --false-negative <quarantine item 42>"
    );
    assert_eq!(
        render_command(&fp, Some(&Source::Log("ref1".into()))),
        "mailsift report --false-positive <the message of ref1>"
    );
    assert_eq!(render_command(&fp, None), "mailsift report --false-positive FILE");
}

#[test]
fn a_replaced_rule_is_given_as_toml_on_standard_input() {
    use mailsift_engine::policy::{
        Condition, Field, FilterRule, MatchMode, Operator, RuleAction, RuleDirection, Value,
    };
    let rule = FilterRule {
        name: "no invoices".into(),
        enabled: true,
        direction: RuleDirection::Inbound,
        match_mode: MatchMode::All,
        conditions: vec![Condition {
            field: Field::Subject,
            header: None,
            op: Operator::Contains,
            value: Some(Value::Text("invoice".into())),
            not: false,
        }],
        actions: vec![RuleAction::Quarantine {}],
        comment: None,
    };
    let cmd = render_command(&Change::ReplaceRule { name: rule.name.clone(), rule: rule.clone() }, None);
    let body = cmd.strip_prefix("mailsift rules replace 'no invoices' - <<'EOF'\n").expect(&cmd);
    let toml_text = body.strip_suffix("EOF").expect(&cmd);
    let back: FilterRule = toml::from_str(toml_text).unwrap();
    assert_eq!(back.name, "no invoices");
    assert_eq!(back.conditions.len(), 1);
}
