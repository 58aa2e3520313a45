//! `mailsift rules`, `mailsift lists` and `mailsift policy`: the administrator's filter rules and allowed and
//! blocked senders, as stored in the data directory's `mailsift.sqlite`, where a running gateway picks up
//! each change within seconds.
//!
//! Positions are shown and given counting from 1 (the first rule is evaluated first). Every change is
//! checked by the engine before it is stored: an invalid rule or entry is refused with the field and the
//! reason, and nothing is written. The configuration file's own `[policy]` is evaluated before the stored
//! one; `rules test` evaluates both, as the gateway does.

use mailsift_gateway::text::{civil_from_days, days_from_civil};
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use mailsift_engine::policy::{
    AllowEntry, BlockAction, BlockEntry, Condition, Field, FilterRule, ListOutcome, MatchMode, Operator, Policy,
    PolicyInput, RuleAction, RuleDirection, Value,
};
use mailsift_engine::Direction;
use mailsift_store::gateway::policy::{parse_policy_toml, rule_to_toml};
use mailsift_store::{Database, ImportMode, ListEntry, PolicyStore, StoredEntry, StoredRule};

use crate::EnvelopeArgs;

#[derive(Subcommand)]
pub enum RulesCommand {
    /// List the filter rules in the order they are evaluated.
    List {
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one rule as TOML (ready to edit and give to `rules replace`), with when it was added, changed
    /// and last matched.
    Show {
        /// The rule's name, or its position (1 is evaluated first; a rule named so wins).
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Add a rule: from TOML (a file, or - for standard input), or from the --if.../--then options.
    Add(Box<AddRule>),
    /// Replace a rule where it stands with the rule in FILE (TOML, as `rules show` prints it; - for
    /// standard input).
    Replace {
        /// The rule's name, or its position (1 is evaluated first; a rule named so wins).
        name: String,
        file: PathBuf,
    },
    /// Remove a rule.
    Rm {
        /// The rule's name, or its position (1 is evaluated first; a rule named so wins).
        name: String,
    },
    /// Move a rule to a position (1 is evaluated first).
    Move {
        /// The rule's name, or its position (1 is evaluated first; a rule named so wins).
        name: String,
        position: usize,
    },
    /// Enable a rule.
    Enable {
        /// The rule's name, or its position (1 is evaluated first; a rule named so wins).
        name: String,
    },
    /// Disable a rule (it is kept, and not evaluated).
    Disable {
        /// The rule's name, or its position (1 is evaluated first; a rule named so wins).
        name: String,
    },
    /// Scan a message with the stored policy (after the configuration's) and show which rules match and
    /// why, what each recipient's allowed/blocked senders decide, and the resulting action.
    Test {
        /// The message file, or - for standard input.
        file: PathBuf,
        #[command(flatten)]
        envelope: EnvelopeArgs,
        /// The message is outbound (sent by one of our users), not inbound.
        #[arg(long)]
        outbound: bool,
        /// Print JSON instead.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct AddRule {
    /// The rule as TOML: a file, or - for standard input. Either the rule's own keys (name = ...,
    /// conditions = [...], actions = [...]) or one [[rules]] table. Several rules: `mailsift policy import`.
    file: Option<PathBuf>,
    /// Where to insert it (1 is evaluated first); at the end by default.
    #[arg(long)]
    at: Option<usize>,
    /// The rule's name (with the --if.../--then options, instead of a file).
    #[arg(long)]
    name: Option<String>,
    /// Condition: the envelope sender is this address, or is in this domain (exactly).
    #[arg(long = "if-sender", value_name = "ADDRESS|DOMAIN")]
    if_sender: Vec<String>,
    /// Condition: the From: header's address is this one, or its domain is this one.
    #[arg(long = "if-from", value_name = "ADDRESS|DOMAIN")]
    if_from: Vec<String>,
    /// Condition on a header: NAME:OP:VALUE, e.g. 'Received:contains:web01.hosting.example'.
    #[arg(long = "if-header", value_name = "NAME:OP:VALUE")]
    if_header: Vec<String>,
    /// Condition on the connecting server, which a forger cannot choose: its IP is in this CIDR range
    /// (client_ip in_cidr).
    #[arg(long = "if-client-ip", value_name = "CIDR")]
    if_client_ip: Vec<String>,
    /// Condition on the connecting server's forward-confirmed reverse-DNS name: exactly this name, or with
    /// a leading dot any name in that domain (.hoster.example).
    #[arg(long = "if-client-ptr", value_name = "NAME|.DOMAIN")]
    if_client_ptr: Vec<String>,
    /// Condition: a DKIM signature of this domain (d=) fully verified.
    #[arg(long = "if-dkim-domain", value_name = "DOMAIN")]
    if_dkim_domain: Vec<String>,
    /// Condition: an ARC chain that validated was sealed by this domain.
    #[arg(long = "if-arc-sealer", value_name = "DOMAIN")]
    if_arc_sealer: Vec<String>,
    /// Condition: a Received line written by one of our trusted relays ([organisation]
    /// trusted_relay_networks) contains this text.
    #[arg(long = "if-trusted-hop", value_name = "TEXT")]
    if_trusted_hop: Vec<String>,
    /// Any other condition: FIELD:OP:VALUE, e.g. 'subject:contains:invoice', 'client_ip:in_cidr:198.51.100.0/24',
    /// 'client_ptr:ends_with:.hoster.example', 'dkim_domain:is:mcsv.example', 'size:above:10 MB'; a leading !
    /// negates it. Fields a forger cannot choose: client_ip, client_ptr, trusted_hop, auth_domain,
    /// dkim_domain, dkim_headers_domain, arc_sealer, spf, dkim, dmarc (and recipient, recipient_domain,
    /// size, score). Fields the sender writes (forgeable): envelope_from(_domain), from, from_domain, helo,
    /// header, any_header, subject, body, attachment_name, attachment_type.
    #[arg(long = "if", value_name = "FIELD:OP:VALUE")]
    if_any_field: Vec<String>,
    /// Any one condition suffices (by default all must hold).
    #[arg(long)]
    any: bool,
    /// Which mail: inbound (default), outbound or both.
    #[arg(long, value_enum)]
    direction: Option<DirectionArg>,
    /// An action: allow, quarantine, reject[:TEXT], tag, stop, add_score:N, add_header:NAME:VALUE,
    /// redirect:ADDRESS, copy:ADDRESS. Repeat for several.
    #[arg(long = "then", value_name = "ACTION")]
    then: Vec<String>,
    /// Free text for the administrators.
    #[arg(long)]
    comment: Option<String>,
    /// Add it disabled.
    #[arg(long)]
    disabled: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum DirectionArg {
    Inbound,
    Outbound,
    Both,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListArg {
    Allow,
    Block,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum BlockActionArg {
    Quarantine,
    Reject,
}

#[derive(Subcommand)]
pub enum ListsCommand {
    /// Add an allowed or blocked sender, for the organisation, one of our domains or one user.
    Add(AddEntry),
    /// List the entries, with when each last matched (so stale ones can be cleaned up) and whether it
    /// has expired.
    List {
        /// Only this list.
        #[arg(value_enum)]
        list: Option<ListArg>,
        /// Only the entries of this recipient address or domain ("-" for the organisation's).
        #[arg(long)]
        recipient: Option<String>,
        /// Only entries that have not matched for this long (e.g. 90d), or never.
        #[arg(long, value_name = "DURATION")]
        stale: Option<String>,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove entries by id (as `lists list` shows them).
    Rm {
        #[arg(required = true)]
        ids: Vec<i64>,
    },
}

#[derive(Args)]
pub struct AddEntry {
    /// Which list.
    #[arg(value_enum)]
    list: ListArg,
    /// The sender: an address (news@partner.example) or a domain (partner.example, with its subdomains).
    sender: String,
    /// Whose list: a recipient address (that user's own) or one of our domains (that domain's); the
    /// organisation's when absent. The user's list beats the domain's, which beats the organisation's.
    #[arg(long)]
    recipient: Option<String>,
    /// Allow only: honour the entry only when the sender's domain passes SPF or DKIM (aligned).
    #[arg(long)]
    require_auth: bool,
    /// Allow only: honour the entry only when the client IP is in this CIDR range.
    #[arg(long, value_name = "CIDR")]
    from_network: Option<String>,
    /// Allow only: honour the entry only when the client's verified PTR name is in this domain.
    #[arg(long, value_name = "DOMAIN")]
    from_ptr_domain: Option<String>,
    /// Allow only: honour it even when the message spoofs our domains or fails the sender's DMARC. Rarely
    /// right.
    #[arg(long)]
    allow_spoofed: bool,
    /// Ignore the entry from then on: a date (2027-01-31, from 00:00 UTC), a time from now (30d, 12h), or
    /// Unix seconds.
    #[arg(long, value_name = "WHEN")]
    expires: Option<String>,
    /// Block only: quarantine (default) or reject.
    #[arg(long, value_enum)]
    action: Option<BlockActionArg>,
    /// Free text for the administrators.
    #[arg(long)]
    comment: Option<String>,
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Store the rules and lists of a TOML file: an export, or a configuration file's [policy]. Merged
    /// into the stored policy (rules of the same name replaced where they stand) unless --replace. All or
    /// nothing.
    Import {
        /// The file, or - for standard input.
        file: PathBuf,
        /// The file becomes the whole stored policy: what it lacks is removed.
        #[arg(long)]
        replace: bool,
    },
    /// Print the stored policy as TOML (rules in order, then allowed and blocked senders).
    Export,
}

// ---- running ----

/// The name of the rule `given` names: a stored rule of that name, else the rule at that position (from 1, as
/// `rules list` numbers them and the console shows them).
fn rule_named(db: &Database, given: &str) -> Result<String> {
    if db.rule_get(given)?.is_some() {
        return Ok(given.trim().to_string());
    }
    if let Ok(n) = given.trim().parse::<usize>() {
        let rules = db.rules()?;
        return match n.checked_sub(1).and_then(|i| rules.get(i)) {
            Some(r) => Ok(r.rule.name.clone()),
            None => bail!("no rule at position {n} (there are {} rules, numbered from 1)", rules.len()),
        };
    }
    bail!("no rule named {given:?}")
}

pub fn run_rules(config: Option<&PathBuf>, data_dir: &Path, cmd: &RulesCommand) -> Result<()> {
    match cmd {
        RulesCommand::List { json } => {
            let rules = match existing(config, data_dir)? {
                Some(db) => db.rules()?,
                None => Vec::new(),
            };
            if *json {
                for r in &rules {
                    let mut v = serde_json::to_value(r)?;
                    v["warnings"] = serde_json::json!(rule_warnings(&r.rule));
                    v["forgeable_conditions"] = serde_json::json!(forgeable_conditions(&r.rule));
                    println!("{}", serde_json::to_string(&v)?);
                }
            } else if rules.is_empty() {
                println!("no filter rules stored (add one with `mailsift rules add`)");
            } else {
                print_rules(&rules);
            }
        }
        RulesCommand::Show { name, json } => {
            let db =
                existing(config, data_dir)?.with_context(|| format!("no rule named {name:?} (no rules stored)"))?;
            let name = &rule_named(&db, name)?;
            let r = db.rule_get(name)?.with_context(|| format!("no rule named {name:?}"))?;
            if *json {
                let mut v = serde_json::to_value(&r)?;
                v["warnings"] = serde_json::json!(rule_warnings(&r.rule));
                v["forgeable_conditions"] = serde_json::json!(forgeable_conditions(&r.rule));
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let count = db.rules()?.len();
                println!(
                    "# rule {} of {count}, {}; added {}, changed {}, last matched {}",
                    r.position + 1,
                    if r.rule.enabled { "enabled" } else { "disabled" },
                    when(r.created),
                    when(r.updated),
                    r.last_matched.map(when).unwrap_or_else(|| "never".into())
                );
                // As TOML comments, so the text still reads back with `rules replace`.
                if let Some(w) = r.rule.forgery_warning() {
                    println!("# WARNING: FORGEABLE: {w}");
                }
                for line in condition_lines(&r.rule) {
                    println!("# {line}");
                }
                print!("{}", rule_to_toml(&r.rule)?);
            }
        }
        RulesCommand::Add(args) => {
            let rule = match &args.file {
                Some(file) => {
                    if args.name.is_some() || !args.then.is_empty() {
                        bail!("give the rule either as a TOML file or with --name/--if.../--then, not both");
                    }
                    read_rule(file)?
                }
                None => rule_from_options(args)?,
            };
            let at = match args.at {
                Some(0) => bail!("--at counts from 1 (the first rule)"),
                Some(n) => Some(n - 1),
                None => None,
            };
            not_in_configuration(config, &[&rule])?;
            let db = create(config, data_dir)?;
            let position = db.rule_add(rule.clone(), at)?;
            println!("added rule {:?} at position {}", rule.name.trim(), position + 1);
            for line in condition_lines(&rule) {
                println!("  {line}");
            }
            warn_if_forgeable(&rule, "added");
        }
        RulesCommand::Replace { name, file } => {
            let rule = read_rule(file)?;
            if !rule.name.trim().eq_ignore_ascii_case(name.trim()) {
                not_in_configuration(config, &[&rule])?;
            }
            let db =
                existing(config, data_dir)?.with_context(|| format!("no rule named {name:?} (no rules stored)"))?;
            let name = &rule_named(&db, name)?;
            db.rule_replace(name, rule.clone())?;
            println!("replaced rule {:?} with {:?}", name.trim(), rule.name.trim());
            for line in condition_lines(&rule) {
                println!("  {line}");
            }
            warn_if_forgeable(&rule, "stored");
        }
        RulesCommand::Rm { name } => {
            let db =
                existing(config, data_dir)?.with_context(|| format!("no rule named {name:?} (no rules stored)"))?;
            let name = &rule_named(&db, name)?;
            db.rule_remove(name)?;
            println!("removed rule {:?}", name.trim());
        }
        RulesCommand::Move { name, position } => {
            if *position == 0 {
                bail!("positions count from 1 (the first rule)");
            }
            let db =
                existing(config, data_dir)?.with_context(|| format!("no rule named {name:?} (no rules stored)"))?;
            let count = db.rules()?.len();
            if *position > count {
                bail!("position {position}: there are {count} rules");
            }
            let name = &rule_named(&db, name)?;
            db.rule_move(name, position - 1)?;
            println!("moved rule {:?} to position {position}", name.trim());
        }
        RulesCommand::Enable { name } | RulesCommand::Disable { name } => {
            let enable = matches!(cmd, RulesCommand::Enable { .. });
            let db =
                existing(config, data_dir)?.with_context(|| format!("no rule named {name:?} (no rules stored)"))?;
            let name = &rule_named(&db, name)?;
            let changed = db.rule_set_enabled(name, enable)?;
            let state = if enable { "enabled" } else { "disabled" };
            if changed {
                println!("rule {:?} {state}", name.trim());
            } else {
                println!("rule {:?} was already {state}", name.trim());
            }
        }
        RulesCommand::Test { file, envelope, outbound, json } => {
            test(config, data_dir, file, envelope, *outbound, *json)?
        }
    }
    Ok(())
}

pub fn run_lists(config: Option<&PathBuf>, data_dir: &Path, cmd: &ListsCommand) -> Result<()> {
    let now = mailsift_engine::unix_now();
    match cmd {
        ListsCommand::Add(args) => {
            let entry = entry_from_options(args, now)?;
            let db = create(config, data_dir)?;
            let id = db.list_add(entry.clone())?;
            println!("added {} as entry {id}", entry.describe());
        }
        ListsCommand::List { list, recipient, stale, json } => {
            let mut entries = match existing(config, data_dir)? {
                Some(db) => db.list_entries()?,
                None => Vec::new(),
            };
            let stale_before = stale.as_deref().map(|s| duration(s).map(|d| now - d)).transpose()?;
            entries.retain(|e| {
                let in_list = match list {
                    Some(ListArg::Allow) => matches!(e.entry, ListEntry::Allow(_)),
                    Some(ListArg::Block) => matches!(e.entry, ListEntry::Block(_)),
                    None => true,
                };
                let whose = match recipient.as_deref() {
                    None => true,
                    Some("-") => e.entry.recipient().is_none_or(|r| r.trim().is_empty()),
                    Some(r) => e.entry.recipient().is_some_and(|x| x.trim().eq_ignore_ascii_case(r.trim())),
                };
                let is_stale = stale_before.is_none_or(|t| e.last_matched.is_none_or(|m| m < t));
                in_list && whose && is_stale
            });
            if *json {
                for e in &entries {
                    println!("{}", serde_json::to_string(&entry_json(e, now))?);
                }
            } else if entries.is_empty() {
                println!("no entries");
            } else {
                print_entries(&entries, now);
            }
        }
        ListsCommand::Rm { ids } => {
            let db = existing(config, data_dir)?.context("no list entries stored")?;
            for id in ids {
                db.list_remove(*id)?;
                println!("removed entry {id}");
            }
        }
    }
    Ok(())
}

pub fn run_policy(config: Option<&PathBuf>, data_dir: &Path, cmd: &PolicyCommand) -> Result<()> {
    match cmd {
        PolicyCommand::Import { file, replace } => {
            let text = read_text(file)?;
            let origin = file.display().to_string();
            // Read here first, so that the file's errors carry its name.
            let incoming = parse_policy_toml(&text).with_context(|| origin.clone())?;
            mailsift_store::gateway::policy::validate_policy(&incoming).with_context(|| origin.clone())?;
            not_in_configuration(config, &incoming.rules.iter().collect::<Vec<_>>())?;
            let db = create(config, data_dir)?;
            let mode = if *replace { ImportMode::Replace } else { ImportMode::Merge };
            let s = db.import_policy(&text, mode).with_context(|| origin.clone())?;
            if s.is_empty() {
                println!("{origin}: nothing to change (policy version {})", s.version);
            } else {
                println!(
                    "{origin}: rules {} added, {} changed, {} removed; entries {} added, {} removed (policy version {})",
                    s.rules_added, s.rules_changed, s.rules_removed, s.entries_added, s.entries_removed, s.version
                );
            }
        }
        PolicyCommand::Export => match existing(config, data_dir)? {
            Some(db) => print!("{}", db.export_policy()?),
            None => println!("# mailsift policy: none stored yet."),
        },
    }
    Ok(())
}

// ---- the database ----

/// The database, when the data directory has one: reading an empty policy should not create files.
fn existing(config: Option<&PathBuf>, data_dir: &Path) -> Result<Option<Database>> {
    crate::config_cmd::existing_database(config, data_dir)
}

fn create(config: Option<&PathBuf>, data_dir: &Path) -> Result<Database> {
    crate::config_cmd::database(config, data_dir)
}

/// Refuses rules whose names the configuration file's `[policy]` already uses: the gateway evaluates both
/// together, and names must be unique across them.
fn not_in_configuration(config: Option<&PathBuf>, rules: &[&FilterRule]) -> Result<()> {
    if config.is_none() {
        return Ok(());
    }
    let engine = crate::load_engine(config)?;
    let configured = &engine.config().policy.rules;
    for r in rules {
        if configured.iter().any(|c| c.name.trim().to_lowercase() == r.name.trim().to_lowercase()) {
            bail!(
                "rule {:?}: name: the configuration file's [policy] has a rule of this name (names are unique across both)",
                r.name.trim()
            );
        }
    }
    Ok(())
}

// ---- reading rules ----

fn read_text(file: &Path) -> Result<String> {
    if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("standard input: cannot read")?;
        return Ok(s);
    }
    std::fs::read_to_string(file).with_context(|| format!("{}: cannot read", file.display()))
}

/// One rule from TOML: its own keys, or a single `[[rules]]` table.
fn read_rule(file: &Path) -> Result<FilterRule> {
    let origin = if file.as_os_str() == "-" { "standard input".to_string() } else { file.display().to_string() };
    let text = read_text(file)?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
    if table.contains_key("rules") && !table.contains_key("name") {
        let p = parse_policy_toml(&text).map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        if !p.allow.is_empty() || !p.block.is_empty() || p.rules.len() != 1 {
            bail!(
                "{origin}: holds {} rules and {} list entries; `rules add` takes one rule (use `mailsift policy import` for more)",
                p.rules.len(),
                p.allow.len() + p.block.len()
            );
        }
        return Ok(p.rules.into_iter().next().expect("one rule"));
    }
    toml::from_str::<FilterRule>(&text).map_err(|e| anyhow::anyhow!("{origin}: {e}"))
}

fn rule_from_options(a: &AddRule) -> Result<FilterRule> {
    let name =
        a.name.clone().context("give the rule as a TOML file (or - for standard input), or with --name and --then")?;
    if a.then.is_empty() {
        bail!("rule {name:?}: actions: give at least one --then (allow, quarantine, reject, tag, add_score:N, ...)");
    }
    let mut conditions = Vec::new();
    let address_or_domain = |v: &str, address: Field, domain: Field| Condition {
        field: if v.contains('@') { address } else { domain },
        header: None,
        op: Operator::Is,
        value: Some(Value::Text(v.trim().to_string())),
        not: false,
    };
    for v in &a.if_sender {
        conditions.push(address_or_domain(v, Field::EnvelopeFrom, Field::EnvelopeFromDomain));
    }
    for v in &a.if_from {
        conditions.push(address_or_domain(v, Field::From, Field::FromDomain));
    }
    let fact = |field: Field, op: Operator, v: &str| Condition {
        field,
        header: None,
        op,
        value: Some(Value::Text(v.trim().to_string())),
        not: false,
    };
    for v in &a.if_client_ip {
        conditions.push(fact(Field::ClientIp, Operator::InCidr, v));
    }
    for v in &a.if_client_ptr {
        // ".hoster.example": any name in the domain; the dot keeps "evilhoster.example" out.
        let op = if v.trim().starts_with('.') { Operator::EndsWith } else { Operator::Is };
        conditions.push(fact(Field::ClientPtr, op, v));
    }
    for v in &a.if_dkim_domain {
        conditions.push(fact(Field::DkimDomain, Operator::Is, v));
    }
    for v in &a.if_arc_sealer {
        conditions.push(fact(Field::ArcSealer, Operator::Is, v));
    }
    for v in &a.if_trusted_hop {
        conditions.push(fact(Field::TrustedHop, Operator::Contains, v));
    }
    for h in &a.if_header {
        let (not, h) = negated(h);
        let mut parts = h.splitn(3, ':');
        let (Some(header), Some(op), value) = (parts.next(), parts.next(), parts.next()) else {
            bail!("--if-header {h:?}: expected NAME:OP:VALUE, e.g. Received:contains:web01.hosting.example");
        };
        let op = operator(op).with_context(|| format!("--if-header {h:?}"))?;
        conditions.push(Condition {
            field: Field::Header,
            header: Some(header.trim().to_string()),
            op,
            value: value.map(|v| Value::Text(v.to_string())),
            not,
        });
    }
    for c in &a.if_any_field {
        let (not, c) = negated(c);
        let mut parts = c.splitn(3, ':');
        let (Some(field), Some(op), value) = (parts.next(), parts.next(), parts.next()) else {
            bail!("--if {c:?}: expected FIELD:OP:VALUE, e.g. subject:contains:invoice");
        };
        let field: Field = serde_json::from_value(serde_json::Value::String(field.trim().to_string()))
            .map_err(|e| anyhow::anyhow!("--if {c:?}: {e}"))?;
        if field == Field::Header {
            bail!("--if {c:?}: use --if-header NAME:OP:VALUE for a header");
        }
        let op = operator(op).with_context(|| format!("--if {c:?}"))?;
        let value = value.map(|v| match (field, v.trim().parse::<f64>()) {
            (Field::Size | Field::Score, Ok(n)) => Value::Number(n),
            _ => Value::Text(v.to_string()),
        });
        conditions.push(Condition { field, header: None, op, value, not });
    }
    let actions = a.then.iter().map(|t| action(t)).collect::<Result<Vec<_>>>()?;
    Ok(FilterRule {
        name,
        enabled: !a.disabled,
        direction: match a.direction {
            None | Some(DirectionArg::Inbound) => RuleDirection::Inbound,
            Some(DirectionArg::Outbound) => RuleDirection::Outbound,
            Some(DirectionArg::Both) => RuleDirection::Both,
        },
        match_mode: if a.any { MatchMode::Any } else { MatchMode::All },
        conditions,
        actions,
        comment: a.comment.clone(),
    })
}

fn negated(s: &str) -> (bool, &str) {
    match s.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, s),
    }
}

fn operator(op: &str) -> Result<Operator> {
    serde_json::from_value(serde_json::Value::String(op.trim().to_string()))
        .map_err(|e| anyhow::anyhow!("operator: {e}"))
}

/// `allow`, `reject:TEXT`, `add_score:-2`, `add_header:X-Name:value`, `copy:archive@ourdomain.example`.
fn action(t: &str) -> Result<RuleAction> {
    let (name, arg) = match t.split_once(':') {
        Some((n, a)) => (n.trim(), Some(a)),
        None => (t.trim(), None),
    };
    let need = |what: &str| arg.map(str::to_string).with_context(|| format!("--then {t:?}: write {name}:{what}"));
    Ok(match name {
        "allow" => RuleAction::Allow {},
        "quarantine" => RuleAction::Quarantine {},
        "reject" => RuleAction::Reject { message: arg.map(str::to_string) },
        "tag" => RuleAction::Tag {},
        "stop" => RuleAction::Stop {},
        "add_score" => {
            let n = need("N")?;
            RuleAction::AddScore { score: n.trim().parse().with_context(|| format!("--then {t:?}: {n:?} is not a number"))? }
        }
        "add_header" => {
            let nv = need("NAME:VALUE")?;
            let (n, v) = nv.split_once(':').with_context(|| format!("--then {t:?}: write add_header:NAME:VALUE"))?;
            RuleAction::AddHeader { name: n.trim().to_string(), value: v.trim().to_string() }
        }
        "redirect" => RuleAction::Redirect { to: need("ADDRESS")?.trim().to_string() },
        "copy" => RuleAction::Copy { to: need("ADDRESS")?.trim().to_string() },
        other => bail!(
            "--then {t:?}: unknown action {other:?} (allow, quarantine, reject, tag, stop, add_score, add_header, redirect, copy)"
        ),
    })
}

fn entry_from_options(a: &AddEntry, now: i64) -> Result<ListEntry> {
    let expires = a.expires.as_deref().map(|e| expiry(e, now)).transpose()?;
    let recipient = a.recipient.as_deref().map(str::trim).filter(|r| !r.is_empty()).map(str::to_string);
    Ok(match a.list {
        ListArg::Allow => {
            if a.action.is_some() {
                bail!("--action is for blocked senders (an allowed sender's mail is delivered)");
            }
            ListEntry::Allow(AllowEntry {
                id: None,
                sender: a.sender.trim().to_string(),
                recipient,
                require_auth: a.require_auth,
                from_ptr_domain: a.from_ptr_domain.clone(),
                from_network: a.from_network.clone(),
                allow_spoofed: a.allow_spoofed,
                expires,
                comment: a.comment.clone(),
            })
        }
        ListArg::Block => {
            if a.require_auth || a.from_network.is_some() || a.from_ptr_domain.is_some() || a.allow_spoofed {
                bail!("--require-auth, --from-network, --from-ptr-domain and --allow-spoofed are for allowed senders");
            }
            ListEntry::Block(BlockEntry {
                id: None,
                sender: a.sender.trim().to_string(),
                recipient,
                action: match a.action {
                    None | Some(BlockActionArg::Quarantine) => BlockAction::Quarantine,
                    Some(BlockActionArg::Reject) => BlockAction::Reject,
                },
                expires,
                comment: a.comment.clone(),
            })
        }
    })
}

// ---- rules test ----

fn test(
    config: Option<&PathBuf>,
    data_dir: &Path,
    file: &Path,
    args: &EnvelopeArgs,
    outbound: bool,
    json: bool,
) -> Result<()> {
    // The engine as the gateway builds it (stored domains and their sending servers included), and the
    // policy as it compiles it: the configuration's [policy] first, then the store's.
    let gateway = crate::scanner::judging(config, data_dir)?;
    let engine = gateway.engine()?;
    let settings = gateway.settings_for(&engine, &crate::scanner::domain_of_envelope(&args.envelope(), outbound))?;
    let engine = crate::with_trained_model(config, engine, data_dir)?;
    let configured = engine.config().policy.clone();
    let stored = &gateway.stored_policy;
    let all = gateway.policy_for(&engine);
    let policy = Policy::new(&all).context("the configuration's [policy] and the stored policy together")?;

    let rep = crate::reputation::for_scans(config, &engine, data_dir)?;
    let scanner = crate::scanner::Scanner::new(engine)?.with_reputation(rep);
    let raw = crate::scan::read_input(file)?;
    let engine = &scanner.engine;
    let msg = engine.parse(&raw);
    let mut envelope = args.envelope();
    if args.from_trace {
        envelope.fill_from_trace(&msg);
    }
    if outbound {
        envelope.direction = Direction::Outbound;
    }
    let mut evidence = scanner.evidence(&raw, &envelope, &msg);
    scanner.add_reputation(&envelope, &msg, &mut evidence);
    // The checks alone, then the rules on their result: the rules' trace says which conditions held.
    let checks = engine.judge_with_settings(&msg, &envelope, &evidence, &Policy::empty(), &settings);
    let now = mailsift_engine::unix_now();
    let input = PolicyInput {
        envelope: &envelope,
        message: &msg,
        evidence: &evidence,
        symbols: &checks.symbols,
        score: checks.score,
        now,
    };
    // As the scan does: conditions on the connecting server and trusted hops see the trust boundary.
    let rules = policy.rules_with_connection(&input, &engine.trust().facts(&envelope, &evidence, &msg));
    let mut recipients: Vec<Option<String>> = envelope.rcpt_to.iter().map(|r| Some(r.clone())).collect();
    if recipients.is_empty() {
        recipients.push(None);
    }
    let lists: Vec<(Option<String>, ListOutcome)> = if rules.decision.is_some() {
        Vec::new()
    } else {
        recipients.iter().map(|r| (r.clone(), policy.lists(&input, r.as_deref()))).collect()
    };
    let verdict = engine.judge_with_settings(&msg, &envelope, &evidence, &policy, &settings);

    if json {
        let warnings: Vec<serde_json::Value> = rules
            .matched
            .iter()
            .filter_map(|m| all.rules.get(m.index))
            .filter_map(|r| r.forgery_warning().map(|w| serde_json::json!({"rule": r.name.trim(), "warning": w})))
            .collect();
        let out = serde_json::json!({
            "file": file.display().to_string(),
            "score_before_policy": checks.score,
            "rules": rules,
            "warnings": warnings,
            "lists": lists.iter().map(|(r, o)| serde_json::json!({"recipient": r, "outcome": o})).collect::<Vec<_>>(),
            "verdict": verdict,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let source = |index: usize| if index < configured.rules.len() { " (configuration)" } else { "" };
    println!("message:   {}", file.display());
    println!(
        "envelope:  {}, from {}, to {}{}",
        if envelope.direction == Direction::Outbound { "outbound" } else { "inbound" },
        envelope.mail_from.as_deref().map(|m| format!("<{m}>")).unwrap_or_else(|| "(not given)".into()),
        if envelope.rcpt_to.is_empty() { "(not given)".to_string() } else { envelope.rcpt_to.join(", ") },
        envelope.client_ip.map(|ip| format!(", client {ip}")).unwrap_or_default(),
    );
    let t = &checks.thresholds;
    println!(
        "score:     {:.2} from the checks (tag {}, quarantine {}, reject {})",
        checks.score, t.tag, t.quarantine, t.reject
    );
    let enabled = all.rules.iter().filter(|r| r.enabled).count();
    println!(
        "rules:     {enabled} enabled of {} ({} from the configuration, {} stored)",
        all.rules.len(),
        configured.rules.len(),
        stored.rules.len()
    );
    if rules.matched.is_empty() {
        println!("  no rule matched");
    }
    for m in &rules.matched {
        let position =
            if m.index < configured.rules.len() { m.index + 1 } else { m.index - configured.rules.len() + 1 };
        // The explanation names the rule, the conditions that held and the actions.
        println!("  matched #{position}{} {}", source(m.index), m.explanation);
        if let Some(rule) = all.rules.get(m.index) {
            for line in condition_lines(rule).iter().filter(|l| l.ends_with(FORGEABLE)) {
                println!("           {line}");
            }
            if let Some(w) = rule.forgery_warning() {
                println!("           WARNING: FORGEABLE: {w}");
            }
        }
    }
    if let Some(d) = &rules.decision {
        println!("  decided by rule {:?}: {}", d.rule, policy_action(d.action));
    }
    if let Some(s) = &rules.stopped_by {
        println!("  rule {s:?} stopped the rules");
    }
    if rules.add_score != 0.0 {
        println!("  score {:+.2} from the rules", rules.add_score);
    }
    if rules.decision.is_some() {
        println!("lists:     not consulted (a rule decided)");
    } else if envelope.direction != Direction::Inbound {
        println!("lists:     not consulted (outbound mail)");
    } else {
        for (r, o) in &lists {
            let whose = r.as_deref().unwrap_or("(no recipient: the organisation's list)");
            for (entry, why) in &o.passed_over {
                println!("lists:     {whose}: passed over {}: {}", entry.describe(), passed_over(why));
            }
            match &o.entry {
                Some(e) => println!("lists:     {whose}: {}", e.describe()),
                None => println!("lists:     {whose}: no entry matched"),
            }
        }
    }
    for ra in &verdict.recipient_actions {
        println!(
            "  for {}: {} (SCL {}){}",
            ra.recipient,
            ra.action.as_str(),
            ra.scl,
            ra.decided_by.as_deref().map(|d| format!(", decided by {d}")).unwrap_or_default()
        );
    }
    println!(
        "decision:  {} (score {:.2}, SCL {}){}",
        verdict.action.as_str(),
        verdict.score,
        verdict.scl,
        verdict.decided_by.as_deref().map(|d| format!(", decided by {d}")).unwrap_or_else(|| ", by the score".into())
    );
    let fx = &verdict.policy_effects;
    for h in &fx.add_headers {
        println!("effect:    add header {}: {}", h.name, h.value);
    }
    if let Some(to) = &fx.redirect {
        println!("effect:    redirect to {to}");
    }
    for to in &fx.copy {
        println!("effect:    copy to {to}");
    }
    if let Some(m) = &fx.reject_message {
        println!("effect:    reject with {m:?}");
    }
    Ok(())
}

fn policy_action(a: mailsift_engine::policy::PolicyAction) -> &'static str {
    match a {
        mailsift_engine::policy::PolicyAction::Allow => "allow",
        mailsift_engine::policy::PolicyAction::Quarantine => "quarantine",
        mailsift_engine::policy::PolicyAction::Reject => "reject",
    }
}

fn passed_over(p: &mailsift_engine::policy::PassedOver) -> String {
    use mailsift_engine::policy::PassedOver;
    match p {
        PassedOver::Spoof(d) => format!("the message spoofs our domain ({d})"),
        PassedOver::Dmarc(d) => format!("the message fails the sender's DMARC ({d})"),
        PassedOver::ConditionUnmet(d) => format!("its condition was not met ({d})"),
    }
}

// ---- printing ----

fn print_rules(rules: &[StoredRule]) {
    println!(
        "{:>4}  {:<32} {:<8} {:<8} {:<14} {:<28} last matched",
        "#", "name", "state", "mail", "conditions", "actions"
    );
    for r in rules {
        let f = &r.rule;
        let mut conditions = match (f.conditions.len(), f.match_mode) {
            (0, _) => "(every message)".to_string(),
            (1, _) => "1".to_string(),
            (n, MatchMode::All) => format!("all of {n}"),
            (n, MatchMode::Any) => format!("any of {n}"),
        };
        let forgeable = forgeable_conditions(f).len();
        if forgeable > 0 {
            conditions.push_str(&format!(" ({forgeable}F)"));
        }
        let actions: Vec<&str> = f.actions.iter().map(|a| a.as_str()).collect();
        println!(
            "{:>4}  {:<32} {:<8} {:<8} {:<14} {:<28} {}",
            r.position + 1,
            clip(f.name.trim(), 32),
            if f.enabled { "enabled" } else { "disabled" },
            match f.direction {
                RuleDirection::Inbound => "inbound",
                RuleDirection::Outbound => "outbound",
                RuleDirection::Both => "both",
            },
            conditions,
            clip(&actions.join(","), 28),
            r.last_matched.map(when).unwrap_or_else(|| "never".into()),
        );
        if let Some(w) = f.forgery_warning() {
            println!("{:>4}  !! WARNING: FORGEABLE: {w}", "");
        }
    }
    if rules.iter().any(|r| !forgeable_conditions(&r.rule).is_empty()) {
        println!("(NF: N conditions on what the sender writes, forgeable; `rules show NAME` marks them)");
    }
}

/// The marker of a condition on something the sender writes.
const FORGEABLE: &str = "(forgeable: the sender writes it)";

/// `header Received contains "web01"`: the condition as the rule has it.
fn describe_condition(c: &Condition) -> String {
    let field = match (c.field, &c.header) {
        (Field::Header, Some(h)) => format!("header {}", h.trim()),
        (f, _) => f.as_str().to_string(),
    };
    let not = if c.not { "not " } else { "" };
    match (&c.value, c.op) {
        (_, Operator::Exists) | (None, _) => format!("{not}{field} {}", c.op.as_str()),
        (Some(Value::Text(t)), op) => format!("{not}{field} {} {t:?}", op.as_str()),
        (Some(v), op) => format!("{not}{field} {} {v}", op.as_str()),
    }
}

/// The 1-based numbers of the rule's conditions on fields the sender writes.
fn forgeable_conditions(rule: &FilterRule) -> Vec<usize> {
    rule.conditions.iter().enumerate().filter(|(_, c)| c.field.forgeable()).map(|(i, _)| i + 1).collect()
}

/// One line per condition, those on fields the sender writes marked as forgeable.
fn condition_lines(rule: &FilterRule) -> Vec<String> {
    rule.conditions
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mark = if c.field.forgeable() { format!("   {FORGEABLE}") } else { String::new() };
            format!("condition {}: {}{mark}", i + 1, describe_condition(c))
        })
        .collect()
}

/// The rule's warnings, for JSON output.
fn rule_warnings(rule: &FilterRule) -> Vec<String> {
    rule.forgery_warning().into_iter().collect()
}

/// A rule that lets mail through on conditions a forger can meet is legitimate to store (for a header a
/// forger would not bother with), but it must not pass unnoticed: the warning goes to standard error, set
/// apart, with the conditions to replace.
pub fn warn_if_forgeable(rule: &FilterRule, done: &str) {
    let Some(w) = rule.forgery_warning() else { return };
    let bar = "=".repeat(78);
    eprintln!("{bar}");
    eprintln!("WARNING: FORGEABLE RULE {:?}", rule.name.trim());
    eprintln!("{w}");
    for line in condition_lines(rule).iter().filter(|l| l.ends_with(FORGEABLE)) {
        eprintln!("  {line}");
    }
    eprintln!(
        "The rule was {done} as written: a forger who writes these values gets mail through it. For one sending \
         server, add e.g. --if-client-ip 203.0.113.50/32 or --if-client-ptr web01.hoster.example; for a signing \
         service, --if-dkim-domain."
    );
    eprintln!("{bar}");
}

fn print_entries(entries: &[StoredEntry], now: i64) {
    println!(
        "{:>6}  {:<5} {:<32} {:<32} {:<26} {:<24} last matched",
        "id", "list", "sender", "whose", "terms", "expires"
    );
    for e in entries {
        println!(
            "{:>6}  {:<5} {:<32} {:<32} {:<26} {:<24} {}",
            e.id,
            e.entry.list_name(),
            clip(e.entry.sender(), 32),
            clip(&whose(&e.entry), 32),
            clip(&terms(&e.entry), 26),
            expiry_text(e.entry.expires(), now),
            e.last_matched.map(|t| format!("{} ({})", when(t), ago(now - t))).unwrap_or_else(|| "never".into()),
        );
    }
}

fn whose(e: &ListEntry) -> String {
    match e.recipient().map(str::trim).filter(|r| !r.is_empty()) {
        None => "organisation".into(),
        Some(r) if r.contains('@') => format!("user {r}"),
        Some(r) => format!("domain {r}"),
    }
}

/// The entry's conditions (allow) or action (block), in a few words.
fn terms(e: &ListEntry) -> String {
    match e {
        ListEntry::Allow(a) => {
            let mut t = Vec::new();
            if a.require_auth {
                t.push("auth".to_string());
            }
            if let Some(n) = &a.from_network {
                t.push(format!("net {n}"));
            }
            if let Some(d) = &a.from_ptr_domain {
                t.push(format!("ptr {d}"));
            }
            if a.allow_spoofed {
                t.push("SPOOFED OK".into());
            }
            if t.is_empty() {
                "-".into()
            } else {
                t.join(", ")
            }
        }
        ListEntry::Block(b) => match b.action {
            BlockAction::Quarantine => "quarantine".into(),
            BlockAction::Reject => "reject".into(),
        },
    }
}

fn expiry_text(expires: Option<i64>, now: i64) -> String {
    match expires {
        None => "never".into(),
        Some(t) if t <= now => format!("EXPIRED {}", day(t)),
        Some(t) => day(t),
    }
}

fn entry_json(e: &StoredEntry, now: i64) -> serde_json::Value {
    serde_json::json!({
        "id": e.id,
        "list": e.entry.list_name(),
        "level": e.entry.level().as_str(),
        "entry": e.entry,
        "created": e.created,
        "last_matched": e.last_matched,
        "expired": e.entry.expires().is_some_and(|t| t <= now),
    })
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(n - 1).collect();
        out.push('…');
        out
    }
}

// ---- time ----

/// `2026-11-23 18:04 UTC`.
fn when(t: i64) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", s / 3600, s % 3600 / 60)
}

/// `2026-11-23`, or with the time when it is not midnight.
fn day(t: i64) -> String {
    if t.rem_euclid(86_400) == 0 {
        let (y, m, d) = civil_from_days(t.div_euclid(86_400));
        format!("{y:04}-{m:02}-{d:02}")
    } else {
        when(t)
    }
}

fn ago(secs: i64) -> String {
    match secs {
        s if s < 60 => "just now".into(),
        s if s < 3600 => format!("{}m ago", s / 60),
        s if s < 86_400 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86_400),
    }
}

/// `90d`, `12h`, `30m`, `45s`, `2w` as seconds.
fn duration(s: &str) -> Result<i64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().with_context(|| format!("{s:?}: expected a duration like 90d or 12h"))?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => bail!("{s:?}: the unit must be s, m, h, d or w"),
    };
    Ok(n * unit)
}

/// An expiry: Unix seconds, a date (from 00:00 UTC), or a time from now.
fn expiry(s: &str, now: i64) -> Result<i64> {
    let s = s.trim();
    let t = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().with_context(|| format!("--expires {s:?}"))?
    } else if let Some((y, m, d)) = parse_date(s) {
        days_from_civil(y, m, d) * 86_400
    } else {
        now + duration(s)
            .with_context(|| format!("--expires {s:?}: a date (2027-01-31), a time from now (30d) or Unix seconds"))?
    };
    if t <= now {
        bail!("--expires {s:?}: {} is already past", when(t));
    }
    Ok(t)
}

fn parse_date(s: &str) -> Option<(i64, u32, u32)> {
    let mut p = s.split('-');
    let (y, m, d) = (p.next()?.parse().ok()?, p.next()?.parse().ok()?, p.next()?.parse().ok()?);
    if p.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) || s.len() != 10 {
        return None;
    }
    Some((y, m, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_convert_both_ways() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2027, 1, 31) * 86_400, 1_801_353_600);
        for z in [-1000, 0, 59, 60, 365, 11_016, 20_000, 25_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(when(1_798_761_600), "2027-01-01 00:00 UTC");
        assert_eq!(expiry("2027-01-31", 1_700_000_000).unwrap(), 1_801_353_600);
        assert_eq!(expiry("30d", 1_700_000_000).unwrap(), 1_700_000_000 + 30 * 86_400);
        assert!(expiry("2020-01-01", 1_700_000_000).is_err());
    }

    #[test]
    fn actions_read_from_the_command_line() {
        assert_eq!(action("reject:go away: now").unwrap(), RuleAction::Reject { message: Some("go away: now".into()) });
        assert_eq!(action("add_score:-2.5").unwrap(), RuleAction::AddScore { score: -2.5 });
        assert_eq!(
            action("add_header:X-Tag:a:b").unwrap(),
            RuleAction::AddHeader { name: "X-Tag".into(), value: "a:b".into() }
        );
        assert!(action("explode").is_err());
        assert!(action("copy").is_err());
    }
}
