//! The administrator's policy in the gateway database: filter rules in their order, allowed and blocked
//! senders, and a version number that every change bumps.
//!
//! The types are the engine's (`mailsift_engine::config::policy`): a rule or entry is stored as its JSON,
//! with copies of the fields worth an index beside it, so what is read back is exactly what was written.
//! Every change goes the same way: read the whole policy with its version, make the change in memory,
//! check the result with the engine's own validator ([`Policy::new`], the one the gateway compiles with),
//! then write only the rows that differ, in one transaction that first checks the version is still the
//! one read (another process may have changed the policy meanwhile; the change is then made again on the
//! new policy). So an invalid rule or entry is refused with its field and reason before anything is
//! written, and the stored policy is always one the gateway can load.
//!
//! A running gateway polls [`PolicyStore::policy_version`] (one row) and reloads with
//! [`PolicyStore::load_policy`] when it moved; it reports what matched with
//! [`PolicyStore::touch_policy_matches`], which costs the message nothing: the times are queued for the
//! writer thread and committed with the next batch of log rows. Recording a match is not a change of
//! policy and does not bump the version.
//!
//! Not here: evaluating the policy (the engine) and the policy of the configuration file's `[policy]` table,
//! which the engine reads itself.

use std::path::Path;

use mailsift_engine::policy::{AllowEntry, BlockEntry, FilterRule, Level, Policy, PolicyConfig, PolicyError};
use mailsift_engine::verdict::{ListKind, PolicyMatch};
use rusqlite::{params, Connection, OptionalExtension};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;

use super::writer::{Command, Job};
use super::Database;
use crate::StoreError;

/// How many times a change is prepared again when another process changed the policy in between; the
/// attempts are spaced by a growing, jittered pause so that two administrators' scripts do not keep
/// colliding.
const ATTEMPTS: u32 = 30;

/// A filter rule as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredRule {
    /// The row's id: it stays with the rule through moves, edits and renames.
    pub id: i64,
    /// Where the rule is evaluated, counting from 0 (its index in [`PolicyConfig::rules`]).
    pub position: usize,
    pub rule: FilterRule,
    /// Unix seconds.
    pub created: i64,
    /// When the rule was last changed (edited, enabled or disabled; not moved).
    pub updated: i64,
    /// When a message last matched it, as the gateway reported.
    pub last_matched: Option<i64>,
}

/// An allowed or blocked sender.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "list", content = "entry", rename_all = "lowercase")]
pub enum ListEntry {
    Allow(AllowEntry),
    Block(BlockEntry),
}

impl ListEntry {
    pub fn list(&self) -> ListKind {
        match self {
            ListEntry::Allow(_) => ListKind::Allow,
            ListEntry::Block(_) => ListKind::Block,
        }
    }

    pub fn list_name(&self) -> &'static str {
        match self {
            ListEntry::Allow(_) => "allow",
            ListEntry::Block(_) => "block",
        }
    }

    pub fn sender(&self) -> &str {
        match self {
            ListEntry::Allow(e) => &e.sender,
            ListEntry::Block(e) => &e.sender,
        }
    }

    pub fn recipient(&self) -> Option<&str> {
        match self {
            ListEntry::Allow(e) => e.recipient.as_deref(),
            ListEntry::Block(e) => e.recipient.as_deref(),
        }
    }

    pub fn level(&self) -> Level {
        Level::of(self.recipient())
    }

    pub fn expires(&self) -> Option<i64> {
        match self {
            ListEntry::Allow(e) => e.expires,
            ListEntry::Block(e) => e.expires,
        }
    }

    /// The store's id as the engine carries it (`AllowEntry::id`), text.
    pub fn id(&self) -> Option<&str> {
        match self {
            ListEntry::Allow(e) => e.id.as_deref(),
            ListEntry::Block(e) => e.id.as_deref(),
        }
    }

    fn set_id(&mut self, id: Option<String>) {
        match self {
            ListEntry::Allow(e) => e.id = id,
            ListEntry::Block(e) => e.id = id,
        }
    }

    /// The JSON stored for the entry: without its id, which is the row's.
    fn stored_json(&self) -> Result<String, PolicyStoreError> {
        let mut bare = self.clone();
        bare.set_id(None);
        let json = match &bare {
            ListEntry::Allow(e) => serde_json::to_string(e),
            ListEntry::Block(e) => serde_json::to_string(e),
        };
        json.map_err(|e| PolicyStoreError::Invalid {
            item: self.describe(),
            field: "entry".into(),
            reason: format!("cannot be stored: {e}"),
        })
    }

    /// `allow entry for "partner.example" (list of alice@ourdomain.example)`, for messages.
    pub fn describe(&self) -> String {
        let whose = match self.recipient().map(str::trim).filter(|r| !r.is_empty()) {
            None => String::new(),
            Some(r) => format!(" (list of {r})"),
        };
        format!("{} entry for {:?}{whose}", self.list_name(), self.sender())
    }
}

/// An allowed or blocked sender as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredEntry {
    /// Never reused, even after a delete.
    pub id: i64,
    /// The entry, with `id` set to this row's.
    pub entry: ListEntry,
    /// Unix seconds.
    pub created: i64,
    /// When the entry last let a message through or held one back, as the gateway reported.
    pub last_matched: Option<i64>,
}

/// The whole policy and the version it was read at, read in one transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VersionedPolicy {
    pub version: i64,
    /// Rules in order; every allow and block entry carries its row id in `id`.
    pub config: PolicyConfig,
}

/// What an import does with the policy already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportMode {
    /// The file becomes the policy: stored rules and entries it does not hold are removed. Rules it holds
    /// under the same name, and entries it holds unchanged, keep their ids and the time they last matched.
    Replace,
    /// The file is added: a rule of the same name is replaced where it stands, other rules go to the end,
    /// entries not already stored are added. Nothing is removed.
    Merge,
}

/// What an import changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    pub rules_added: usize,
    /// Rules whose content or position changed.
    pub rules_changed: usize,
    pub rules_removed: usize,
    pub entries_added: usize,
    pub entries_removed: usize,
    /// The policy version after the import (unchanged when the import changed nothing).
    pub version: i64,
}

impl ImportSummary {
    pub fn is_empty(&self) -> bool {
        self.rules_added + self.rules_changed + self.rules_removed + self.entries_added + self.entries_removed == 0
    }
}

/// Why a policy change was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum PolicyStoreError {
    /// The text does not read as policy (TOML syntax, an unknown key, a wrong type); the message names the
    /// line or the item.
    #[error("{0}")]
    Parse(String),
    /// A rule or entry that is not valid, or does not fit with the rest of the policy: which one, the field,
    /// the reason. Nothing was written.
    #[error("{item}: {field}: {reason}")]
    Invalid { item: String, field: String, reason: String },
    #[error("no rule named {0:?}")]
    NoSuchRule(String),
    #[error("no list entry with id {0}")]
    NoSuchEntry(i64),
    /// Other processes kept changing the policy while this change was being prepared.
    #[error("the policy changed {0} times while this change was being prepared; try again")]
    Contended(u32),
    /// A stored rule or entry that no longer reads (written by a newer mailsift, or damaged).
    #[error("{path}: {what}: {reason}")]
    Damaged { path: String, what: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The policy's storage. SQLite's [`Database`] implements it; a PostgreSQL backend would implement the same.
///
/// Positions count from 0, as indexes into [`PolicyConfig::rules`]. Rule names are compared ignoring case
/// and surrounding spaces, as the engine compares them. Every method that changes the policy either
/// changes it completely and bumps the version, or changes nothing and says why.
pub trait PolicyStore {
    /// The whole policy, as the engine compiles it, with the version it was read at.
    fn load_policy(&self) -> Result<VersionedPolicy, PolicyStoreError>;
    /// The number of changes made to the policy so far; cheap enough to poll.
    fn policy_version(&self) -> Result<i64, PolicyStoreError>;

    /// Every rule, in order.
    fn rules(&self) -> Result<Vec<StoredRule>, PolicyStoreError>;
    fn rule_get(&self, name: &str) -> Result<Option<StoredRule>, PolicyStoreError>;
    /// Adds a rule at the end (`at: None`) or at a position (the rules from there on move down one); returns
    /// its position.
    fn rule_add(&self, rule: FilterRule, at: Option<usize>) -> Result<usize, PolicyStoreError>;
    /// Replaces the rule called `name` where it stands (the new one may have another name).
    fn rule_replace(&self, name: &str, rule: FilterRule) -> Result<(), PolicyStoreError>;
    fn rule_remove(&self, name: &str) -> Result<(), PolicyStoreError>;
    /// Moves a rule to a position (the others keep their order around it).
    fn rule_move(&self, name: &str, to: usize) -> Result<(), PolicyStoreError>;
    /// Enables or disables a rule; `false` when it already was (nothing changed).
    fn rule_set_enabled(&self, name: &str, enabled: bool) -> Result<bool, PolicyStoreError>;
    fn rule_enable(&self, name: &str) -> Result<bool, PolicyStoreError> {
        self.rule_set_enabled(name, true)
    }
    fn rule_disable(&self, name: &str) -> Result<bool, PolicyStoreError> {
        self.rule_set_enabled(name, false)
    }

    /// Every allow and block entry, by id.
    fn list_entries(&self) -> Result<Vec<StoredEntry>, PolicyStoreError>;
    /// Adds an entry (its `id`, if any, is ignored); returns its id.
    fn list_add(&self, entry: ListEntry) -> Result<i64, PolicyStoreError>;
    fn list_remove(&self, id: i64) -> Result<(), PolicyStoreError>;

    /// Records that these entries matched at `now` (Unix seconds). Queued: it returns at once, and the
    /// times are written with the next batch. Ids no longer stored are skipped.
    fn touch_list_entries(&self, ids: &[i64], now: i64) -> Result<(), PolicyStoreError>;
    /// As [`PolicyStore::touch_list_entries`], for rules by name.
    fn touch_rules(&self, names: &[String], now: i64) -> Result<(), PolicyStoreError>;
    /// Records what a verdict reports in `policy_matches`: the rules that matched and the entries that were
    /// honoured (an allow entry passed over for spoofing or an unmet condition did not let anything
    /// through). Entries without a store id (from the configuration file) are skipped.
    fn touch_policy_matches(&self, matches: &[PolicyMatch], now: i64) -> Result<(), PolicyStoreError> {
        let mut rules = Vec::new();
        let mut entries = Vec::new();
        for m in matches {
            match m {
                PolicyMatch::Rule { name, .. } => rules.push(name.clone()),
                PolicyMatch::Entry { entry, honoured: true } => {
                    entries.extend(entry.id.as_deref().and_then(|i| i.parse::<i64>().ok()))
                }
                PolicyMatch::Entry { .. } => {}
            }
        }
        if !rules.is_empty() {
            self.touch_rules(&rules, now)?;
        }
        if !entries.is_empty() {
            self.touch_list_entries(&entries, now)?;
        }
        Ok(())
    }

    /// Reads a policy from TOML (see [`parse_policy_toml`]) and stores it, all or nothing.
    fn import_policy(&self, toml: &str, mode: ImportMode) -> Result<ImportSummary, PolicyStoreError>;
    /// The policy as TOML, without the store's ids: importing it with [`ImportMode::Replace`] gives the
    /// same policy back.
    fn export_policy(&self) -> Result<String, PolicyStoreError>;
}

/// Reads policy TOML: either the policy's own tables (`[[rules]]`, `[[allow]]`, `[[block]]`), as
/// [`PolicyStore::export_policy`] writes them, or a configuration file, whose `[policy]` table is read and
/// the rest ignored. Unknown keys are refused with the item named. An `id` given for an entry is dropped:
/// ids are the store's.
pub fn parse_policy_toml(text: &str) -> Result<PolicyConfig, PolicyStoreError> {
    #[derive(serde::Deserialize)]
    struct ConfigFile {
        #[serde(default)]
        policy: PolicyConfig,
    }
    let parse = |e: toml::de::Error| PolicyStoreError::Parse(e.to_string().trim_end().to_string());
    let table: toml::Table = toml::from_str(text).map_err(parse)?;
    let mut config = if table.contains_key("policy") {
        toml::from_str::<ConfigFile>(text).map_err(parse)?.policy
    } else {
        toml::from_str::<PolicyConfig>(text).map_err(parse)?
    };
    config.allow.iter_mut().for_each(|e| e.id = None);
    config.block.iter_mut().for_each(|e| e.id = None);
    Ok(config)
}

/// Writes a policy as TOML, without the entries' ids, in the layout of the documentation: one table per
/// rule and entry, the most telling keys first, each condition and action on a line of its own.
pub fn policy_to_toml(config: &PolicyConfig) -> Result<String, PolicyStoreError> {
    let mut out = String::new();
    for r in &config.rules {
        out.push_str(&rule_to_toml(r)?);
        out.push('\n');
    }
    for e in &config.allow {
        let bare = AllowEntry { id: None, ..e.clone() };
        write_item(&mut out, "allow", &bare, ENTRY_ORDER)?;
        out.push('\n');
    }
    for e in &config.block {
        let bare = BlockEntry { id: None, ..e.clone() };
        write_item(&mut out, "block", &bare, ENTRY_ORDER)?;
        out.push('\n');
    }
    Ok(out)
}

/// One rule as a `[[rules]]` table, as [`policy_to_toml`] writes it.
pub fn rule_to_toml(rule: &FilterRule) -> Result<String, PolicyStoreError> {
    let mut out = String::new();
    write_item(&mut out, "rules", rule, RULE_ORDER)?;
    Ok(out)
}

const RULE_ORDER: &[&str] = &["name", "enabled", "direction", "match", "comment", "conditions", "actions"];
const CONDITION_ORDER: &[&str] = &["field", "header", "op", "value", "not"];
const ACTION_ORDER: &[&str] = &["action"];
const ENTRY_ORDER: &[&str] = &[
    "sender",
    "recipient",
    "action",
    "require_auth",
    "from_ptr_domain",
    "from_network",
    "allow_spoofed",
    "expires",
    "comment",
];

fn write_item(out: &mut String, header: &str, item: &impl Serialize, order: &[&str]) -> Result<(), PolicyStoreError> {
    let failed = |reason: String| PolicyStoreError::Invalid { item: header.into(), field: "export".into(), reason };
    let table = match toml::Value::try_from(item).map_err(|e| failed(e.to_string()))? {
        toml::Value::Table(t) => t,
        other => return Err(failed(format!("{} is not a table", other.type_str()))),
    };
    out.push_str(&format!("[[{header}]]\n"));
    for (k, v) in ordered(&table, order) {
        match v {
            toml::Value::Array(items) if !items.is_empty() && items.iter().all(toml::Value::is_table) => {
                let inner = if k == "conditions" { CONDITION_ORDER } else { ACTION_ORDER };
                out.push_str(&format!("{} = [\n", toml_key(k)));
                for i in items {
                    out.push_str(&format!("  {},\n", inline_table(i, inner)));
                }
                out.push_str("]\n");
            }
            _ => out.push_str(&format!("{} = {v}\n", toml_key(k))),
        }
    }
    Ok(())
}

/// The keys in the preferred order, then the others alphabetically.
fn ordered<'t>(table: &'t toml::Table, order: &[&str]) -> Vec<(&'t String, &'t toml::Value)> {
    let mut kv: Vec<_> = table.iter().collect();
    kv.sort_by_key(|(k, _)| (order.iter().position(|o| o == k).unwrap_or(order.len()), k.as_str()));
    kv
}

fn inline_table(v: &toml::Value, order: &[&str]) -> String {
    match v {
        toml::Value::Table(t) => {
            let parts: Vec<String> =
                ordered(t, order).into_iter().map(|(k, v)| format!("{} = {v}", toml_key(k))).collect();
            if parts.is_empty() {
                "{}".into()
            } else {
                format!("{{ {} }}", parts.join(", "))
            }
        }
        other => other.to_string(),
    }
}

fn toml_key(k: &str) -> String {
    if !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        k.to_string()
    } else {
        toml::Value::String(k.to_string()).to_string()
    }
}

/// Checks a policy with the engine, naming items by position (for a file being imported).
pub fn validate_policy(config: &PolicyConfig) -> Result<(), PolicyStoreError> {
    Policy::new(config).map(|_| ()).map_err(|e| invalid(e, None))
}

/// An engine refusal as the store reports it. With `stored`, items are named by what identifies them in
/// the store (the rule's name, the entry's id) rather than by position in a list the user never saw.
fn invalid(e: PolicyError, stored: Option<&PolicyConfig>) -> PolicyStoreError {
    match e {
        PolicyError::Rule { index, rule, field, reason } => {
            let item = match stored {
                Some(_) => format!("rule {rule:?}"),
                None => format!("rules[{index}] {rule:?}"),
            };
            PolicyStoreError::Invalid { item, field, reason }
        }
        PolicyError::Entry { list, index, sender, field, reason } => {
            let id = stored.and_then(|c| match list {
                "allow" => c.allow.get(index).and_then(|e| e.id.clone()),
                _ => c.block.get(index).and_then(|e| e.id.clone()),
            });
            let item = match (stored, id) {
                (Some(_), Some(id)) => format!("{list} entry {id} for {sender:?}"),
                (Some(_), None) => format!("{list} entry for {sender:?}"),
                (None, _) => format!("{list}[{index}] {sender:?}"),
            };
            PolicyStoreError::Invalid { item, field, reason }
        }
        PolicyError::Limit { field, reason } => PolicyStoreError::Invalid { item: "rules".into(), field, reason },
    }
}

pub(crate) fn name_key(name: &str) -> String {
    name.trim().to_lowercase()
}

fn direction_str(rule: &FilterRule) -> &'static str {
    use mailsift_engine::policy::RuleDirection;
    match rule.direction {
        RuleDirection::Inbound => "inbound",
        RuleDirection::Outbound => "outbound",
        RuleDirection::Both => "both",
    }
}

// ---- reading ----

/// The policy as read in one transaction, with the stored JSON of each item (to see what a change alters).
#[derive(Default)]
struct Snapshot {
    version: i64,
    rules: Vec<StoredRule>,
    rule_json: Vec<String>,
    entries: Vec<StoredEntry>,
    entry_json: Vec<String>,
    /// Rule position by name key, by row id; entry position by row id, and by list and stored JSON.
    rule_by_name: FxHashMap<String, usize>,
    rule_by_id: FxHashMap<i64, usize>,
    entry_by_id: FxHashMap<i64, usize>,
    entry_by_json: FxHashMap<(&'static str, String), i64>,
}

impl Snapshot {
    fn rule_index(&self, name: &str) -> Option<usize> {
        self.rule_by_name.get(&name_key(name)).copied()
    }

    /// The id of the stored entry equal to this one.
    fn entry_id(&self, list: &'static str, json: &str) -> Option<i64> {
        self.entry_by_json.get(&(list, json.to_string())).copied()
    }

    fn config(&self) -> PolicyConfig {
        let mut c = PolicyConfig { rules: self.rules.iter().map(|r| r.rule.clone()).collect(), ..Default::default() };
        for e in &self.entries {
            match &e.entry {
                ListEntry::Allow(a) => c.allow.push(a.clone()),
                ListEntry::Block(b) => c.block.push(b.clone()),
            }
        }
        c
    }
}

pub(crate) struct RawRule {
    pub(crate) id: i64,
    pub(crate) json: String,
    pub(crate) created: i64,
    pub(crate) updated: i64,
    pub(crate) last_matched: Option<i64>,
}

pub(crate) struct RawEntry {
    pub(crate) id: i64,
    pub(crate) list: String,
    pub(crate) json: String,
    pub(crate) created: i64,
    pub(crate) last_matched: Option<i64>,
}

fn read_version(c: &Connection) -> rusqlite::Result<i64> {
    c.query_row("SELECT version FROM policy_version WHERE id = 1", [], |r| r.get(0))
}

fn read_raw(c: &Connection) -> rusqlite::Result<(i64, Vec<RawRule>, Vec<RawEntry>)> {
    // One read transaction, so the version and the rows agree.
    let tx = c.unchecked_transaction()?;
    let version = read_version(&tx)?;
    let rules = tx
        .prepare_cached("SELECT id, rule, created, updated, last_matched FROM policy_rules ORDER BY position, id")?
        .query_map([], |r| {
            Ok(RawRule {
                id: r.get(0)?,
                json: r.get(1)?,
                created: r.get(2)?,
                updated: r.get(3)?,
                last_matched: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let entries = tx
        .prepare_cached("SELECT id, list, entry, created, last_matched FROM policy_list_entries ORDER BY id")?
        .query_map([], |r| {
            Ok(RawEntry {
                id: r.get(0)?,
                list: r.get(1)?,
                json: r.get(2)?,
                created: r.get(3)?,
                last_matched: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    tx.finish()?;
    Ok((version, rules, entries))
}

fn decode_rule(path: &Path, raw: &RawRule, position: usize) -> Result<StoredRule, PolicyStoreError> {
    let rule = serde_json::from_str::<FilterRule>(&raw.json).map_err(|e| PolicyStoreError::Damaged {
        path: path.display().to_string(),
        what: format!("stored rule {}", raw.id),
        reason: e.to_string(),
    })?;
    Ok(StoredRule {
        id: raw.id,
        position,
        rule,
        created: raw.created,
        updated: raw.updated,
        last_matched: raw.last_matched,
    })
}

fn decode_entry(path: &Path, raw: &RawEntry) -> Result<StoredEntry, PolicyStoreError> {
    let damaged = |reason: String| PolicyStoreError::Damaged {
        path: path.display().to_string(),
        what: format!("stored list entry {}", raw.id),
        reason,
    };
    let mut entry = match raw.list.as_str() {
        "allow" => ListEntry::Allow(serde_json::from_str(&raw.json).map_err(|e| damaged(e.to_string()))?),
        "block" => ListEntry::Block(serde_json::from_str(&raw.json).map_err(|e| damaged(e.to_string()))?),
        other => return Err(damaged(format!("unknown list {other:?}"))),
    };
    entry.set_id(Some(raw.id.to_string()));
    Ok(StoredEntry { id: raw.id, entry, created: raw.created, last_matched: raw.last_matched })
}

// ---- writing ----

/// The policy a change leads to: each rule and entry with the row it comes from (`None`: a new one).
struct Target {
    rules: Vec<(Option<i64>, FilterRule)>,
    entries: Vec<(Option<i64>, ListEntry)>,
}

impl Target {
    fn of(s: &Snapshot) -> Target {
        Target {
            rules: s.rules.iter().map(|r| (Some(r.id), r.rule.clone())).collect(),
            entries: s.entries.iter().map(|e| (Some(e.id), e.entry.clone())).collect(),
        }
    }

    fn config(&self) -> PolicyConfig {
        let mut c = PolicyConfig { rules: self.rules.iter().map(|(_, r)| r.clone()).collect(), ..Default::default() };
        for (id, e) in &self.entries {
            let mut e = e.clone();
            e.set_id(id.map(|i| i.to_string()));
            match e {
                ListEntry::Allow(a) => c.allow.push(a),
                ListEntry::Block(b) => c.block.push(b),
            }
        }
        c
    }
}

pub(crate) struct RuleRow {
    pub(crate) name: String,
    pub(crate) name_key: String,
    pub(crate) enabled: bool,
    pub(crate) direction: &'static str,
    pub(crate) json: String,
}

impl RuleRow {
    fn of(rule: &FilterRule) -> Result<RuleRow, PolicyStoreError> {
        let json = serde_json::to_string(rule).map_err(|e| PolicyStoreError::Invalid {
            item: format!("rule {:?}", rule.name),
            field: "rule".into(),
            reason: format!("cannot be stored: {e}"),
        })?;
        Ok(RuleRow {
            name: rule.name.trim().to_string(),
            name_key: name_key(&rule.name),
            enabled: rule.enabled,
            direction: direction_str(rule),
            json,
        })
    }
}

pub(crate) enum RuleWrite {
    Insert {
        position: usize,
        row: RuleRow,
    },
    /// A changed rule (`row`), or one that only moved (`row: None`).
    Update {
        id: i64,
        position: usize,
        row: Option<RuleRow>,
    },
}

pub(crate) struct EntryRow {
    pub(crate) list: &'static str,
    pub(crate) level: &'static str,
    pub(crate) recipient: Option<String>,
    pub(crate) sender: String,
    pub(crate) expires: Option<i64>,
    pub(crate) json: String,
}

/// The rows a change writes, and the version it was prepared against.
pub(crate) struct Plan {
    pub(crate) expect_version: i64,
    pub(crate) now: i64,
    pub(crate) delete_rules: Vec<i64>,
    pub(crate) rules: Vec<RuleWrite>,
    pub(crate) delete_entries: Vec<i64>,
    pub(crate) insert_entries: Vec<EntryRow>,
}

impl Plan {
    pub(crate) fn is_empty(&self) -> bool {
        self.delete_rules.is_empty()
            && self.rules.is_empty()
            && self.delete_entries.is_empty()
            && self.insert_entries.is_empty()
    }

    fn summary(&self, version: i64) -> ImportSummary {
        ImportSummary {
            rules_added: self.rules.iter().filter(|w| matches!(w, RuleWrite::Insert { .. })).count(),
            rules_changed: self.rules.iter().filter(|w| matches!(w, RuleWrite::Update { .. })).count(),
            rules_removed: self.delete_rules.len(),
            entries_added: self.insert_entries.len(),
            entries_removed: self.delete_entries.len(),
            version,
        }
    }
}

fn plan(s: &Snapshot, t: &Target, now: i64) -> Result<Plan, PolicyStoreError> {
    let mut p = Plan {
        expect_version: s.version,
        now,
        delete_rules: Vec::new(),
        rules: Vec::new(),
        delete_entries: Vec::new(),
        insert_entries: Vec::new(),
    };
    let kept: FxHashSet<i64> = t.rules.iter().filter_map(|(id, _)| *id).collect();
    p.delete_rules = s.rules.iter().map(|r| r.id).filter(|id| !kept.contains(id)).collect();
    for (position, (id, rule)) in t.rules.iter().enumerate() {
        let row = RuleRow::of(rule)?;
        match id {
            None => p.rules.push(RuleWrite::Insert { position, row }),
            Some(id) => {
                let i = s.rule_by_id[id];
                if s.rule_json[i] != row.json {
                    p.rules.push(RuleWrite::Update { id: *id, position, row: Some(row) });
                } else if s.rules[i].position != position {
                    p.rules.push(RuleWrite::Update { id: *id, position, row: None });
                }
            }
        }
    }
    let kept: FxHashSet<i64> = t.entries.iter().filter_map(|(id, _)| *id).collect();
    p.delete_entries = s.entries.iter().map(|e| e.id).filter(|id| !kept.contains(id)).collect();
    for (id, entry) in &t.entries {
        match id {
            Some(id) => {
                // Entries are not edited in place: a different entry is a new row.
                let i = s.entry_by_id[id];
                debug_assert_eq!(s.entry_json[i], entry.stored_json()?);
            }
            None => p.insert_entries.push(EntryRow {
                list: entry.list_name(),
                level: entry.level().as_str(),
                recipient: entry.recipient().map(|r| r.trim().to_string()).filter(|r| !r.is_empty()),
                sender: entry.sender().trim().to_string(),
                expires: entry.expires(),
                json: entry.stored_json()?,
            }),
        }
    }
    Ok(p)
}

/// What the writer made of a plan.
pub(crate) enum Applied {
    /// The policy changed since the plan was made: nothing written.
    Stale,
    Done {
        version: i64,
        /// Ids of the inserted rules and entries, in the plan's order.
        rule_ids: Vec<i64>,
        entry_ids: Vec<i64>,
    },
}

fn apply(c: &Connection, p: &Plan) -> rusqlite::Result<Applied> {
    let version = read_version(c)?;
    if version != p.expect_version {
        return Ok(Applied::Stale);
    }
    if p.is_empty() {
        return Ok(Applied::Done { version, rule_ids: Vec::new(), entry_ids: Vec::new() });
    }
    let mut delete = c.prepare_cached("DELETE FROM policy_rules WHERE id = ?1")?;
    for id in &p.delete_rules {
        delete.execute([id])?;
    }
    let mut rule_ids = Vec::new();
    for w in &p.rules {
        match w {
            RuleWrite::Insert { position, row } => {
                c.prepare_cached(
                    "INSERT INTO policy_rules (position, name, name_key, enabled, direction, rule, created, updated) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                )?
                .execute(params![
                    *position as i64,
                    row.name,
                    row.name_key,
                    row.enabled,
                    row.direction,
                    row.json,
                    p.now
                ])?;
                rule_ids.push(c.last_insert_rowid());
            }
            RuleWrite::Update { id, position, row: Some(row) } => {
                c.prepare_cached(
                    "UPDATE policy_rules SET position = ?2, name = ?3, name_key = ?4, enabled = ?5, direction = ?6, \
                     rule = ?7, updated = ?8 WHERE id = ?1",
                )?
                .execute(params![
                    id,
                    *position as i64,
                    row.name,
                    row.name_key,
                    row.enabled,
                    row.direction,
                    row.json,
                    p.now
                ])?;
            }
            RuleWrite::Update { id, position, row: None } => {
                c.prepare_cached("UPDATE policy_rules SET position = ?2 WHERE id = ?1")?
                    .execute(params![id, *position as i64])?;
            }
        }
    }
    let mut delete = c.prepare_cached("DELETE FROM policy_list_entries WHERE id = ?1")?;
    for id in &p.delete_entries {
        delete.execute([id])?;
    }
    let mut entry_ids = Vec::new();
    let mut insert = c.prepare_cached(
        "INSERT INTO policy_list_entries (list, level, recipient, sender, expires, entry, created) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for e in &p.insert_entries {
        insert.execute(params![e.list, e.level, e.recipient, e.sender, e.expires, e.json, p.now])?;
        entry_ids.push(c.last_insert_rowid());
    }
    c.prepare_cached("UPDATE policy_version SET version = version + 1 WHERE id = 1")?.execute([])?;
    Ok(Applied::Done { version: version + 1, rule_ids, entry_ids })
}

/// Records match times; a lazy job, so nobody waits for it and a failure is reported here.
struct Touch {
    entries: Vec<i64>,
    rules: Vec<String>,
    now: i64,
    failed: Option<String>,
}

impl Job for Touch {
    fn run(&mut self, c: &Connection) -> bool {
        let result = (|| -> rusqlite::Result<()> {
            let mut entry = c.prepare_cached(
                "UPDATE policy_list_entries SET last_matched = ?2 \
                 WHERE id = ?1 AND (last_matched IS NULL OR last_matched < ?2)",
            )?;
            for id in &self.entries {
                entry.execute(params![id, self.now])?;
            }
            let mut rule = c.prepare_cached(
                "UPDATE policy_rules SET last_matched = ?2 \
                 WHERE name_key = ?1 AND (last_matched IS NULL OR last_matched < ?2)",
            )?;
            for key in &self.rules {
                rule.execute(params![key, self.now])?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => true,
            Err(e) => {
                self.failed = Some(e.to_string());
                false
            }
        }
    }

    fn finish(self: Box<Self>, path: &Path, committed: Result<(), &str>) {
        if let Some(reason) = self.failed.as_deref().or(committed.err()) {
            eprintln!(
                "mailsift: policy: {}: when rules and entries last matched was not recorded: {reason}",
                path.display()
            );
        }
    }
}

impl Database {
    fn snapshot(&self) -> Result<Snapshot, PolicyStoreError> {
        let (version, raw_rules, raw_entries) = match &self.pg {
            Some(pg) => pg.call(crate::pg::policy::read_raw)?,
            None => self.read(read_raw)?,
        };
        let path = self.path();
        let mut s = Snapshot { version, ..Snapshot::default() };
        for (position, raw) in raw_rules.into_iter().enumerate() {
            let rule = decode_rule(path, &raw, position)?;
            s.rule_by_name.insert(name_key(&rule.rule.name), position);
            s.rule_by_id.insert(rule.id, position);
            s.rules.push(rule);
            s.rule_json.push(raw.json);
        }
        for (i, raw) in raw_entries.into_iter().enumerate() {
            let entry = decode_entry(path, &raw)?;
            s.entry_by_id.insert(entry.id, i);
            s.entry_by_json.insert((entry.entry.list_name(), raw.json.clone()), entry.id);
            s.entries.push(entry);
            s.entry_json.push(raw.json);
        }
        Ok(s)
    }

    /// Makes a change: `edit` turns the stored policy into the one wanted (and says what to return); the
    /// result is checked whole, then written if nobody changed the policy meanwhile, else made again.
    fn change<T>(
        &self,
        mut edit: impl FnMut(&Snapshot) -> Result<(Target, T), PolicyStoreError>,
    ) -> Result<(T, ImportSummary, Vec<i64>, Vec<i64>), PolicyStoreError> {
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(backoff(attempt));
            }
            let s = self.snapshot()?;
            let (target, out) = edit(&s)?;
            let candidate = target.config();
            Policy::new(&candidate).map_err(|e| invalid(e, Some(&candidate)))?;
            let plan = plan(&s, &target, mailsift_engine::unix_now())?;
            let summary = plan.summary(s.version);
            let plan_empty = plan.is_empty();
            let applied = match &self.pg {
                Some(pg) => {
                    let plan = std::sync::Arc::new(plan);
                    pg.transaction(move |tx| crate::pg::policy::apply(tx, &plan))?
                }
                None => self.write(move |c| apply(c, &plan))?,
            };
            match applied {
                Applied::Stale => continue,
                Applied::Done { version, rule_ids, entry_ids } => {
                    let summary = ImportSummary { version, ..summary };
                    debug_assert!(plan_empty || version > s.version);
                    return Ok((out, summary, rule_ids, entry_ids));
                }
            }
        }
        Err(PolicyStoreError::Contended(ATTEMPTS))
    }

    fn rule_position(s: &Snapshot, name: &str) -> Result<usize, PolicyStoreError> {
        s.rule_index(name).ok_or_else(|| PolicyStoreError::NoSuchRule(name.trim().to_string()))
    }

    fn send_lazy(&self, job: Touch) -> Result<(), PolicyStoreError> {
        if let Some(pg) = &self.pg {
            let Touch { entries, rules, now, .. } = job;
            let target = pg.target().to_string();
            // With the log rows, as on SQLite: a flush waits for it too.
            return Ok(pg.log_lazy(
                move |tx| crate::pg::policy::touch(tx, &entries, &rules, now),
                move |r| {
                    if let Err(reason) = r {
                        eprintln!(
                            "mailsift: policy: {target}: when rules and entries last matched was not recorded: {reason}"
                        );
                    }
                },
            )?);
        }
        Ok(self.send(Command::Lazy(Box::new(job)))?)
    }
}

/// A pause of up to `attempt` times 5 ms (at most 100 ms), jittered by the clock so that two writers that
/// collided do not collide again.
fn backoff(attempt: u32) -> std::time::Duration {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let ceiling = (attempt.min(20) * 5_000) as u64;
    std::time::Duration::from_micros(1_000 + (nanos as u64 ^ (nanos as u64 >> 7)) % ceiling)
}

fn name_taken(s: &Snapshot, rule: &FilterRule, except: Option<usize>) -> Result<(), PolicyStoreError> {
    match s.rule_index(&rule.name) {
        Some(i) if Some(i) != except => Err(PolicyStoreError::Invalid {
            item: format!("rule {:?}", rule.name.trim()),
            field: "name".into(),
            reason: format!(
                "a rule named {:?} is stored already (names are unique, ignoring case)",
                s.rules[i].rule.name.trim()
            ),
        }),
        _ => Ok(()),
    }
}

fn bad_position(rule: &str, position: usize, count: usize) -> PolicyStoreError {
    PolicyStoreError::Invalid {
        item: format!("rule {:?}", rule.trim()),
        field: "position".into(),
        reason: format!("{position} is beyond the end: {count} rules are stored (positions count from 0)"),
    }
}

impl PolicyStore for Database {
    fn load_policy(&self) -> Result<VersionedPolicy, PolicyStoreError> {
        let s = self.snapshot()?;
        Ok(VersionedPolicy { version: s.version, config: s.config() })
    }

    fn policy_version(&self) -> Result<i64, PolicyStoreError> {
        if let Some(pg) = &self.pg {
            return Ok(pg.call(crate::pg::policy::read_version)?);
        }
        Ok(self.read(read_version)?)
    }

    fn rules(&self) -> Result<Vec<StoredRule>, PolicyStoreError> {
        Ok(self.snapshot()?.rules)
    }

    fn rule_get(&self, name: &str) -> Result<Option<StoredRule>, PolicyStoreError> {
        let key = name_key(name);
        if let Some(pg) = &self.pg {
            let raw = pg.call(move |c| crate::pg::policy::rule_get(c, &key))?;
            return raw.map(|(raw, position)| decode_rule(self.path(), &raw, position as usize)).transpose();
        }
        let raw = self.read(|c| {
            c.query_row(
                "SELECT id, rule, created, updated, last_matched, \
                 (SELECT count(*) FROM policy_rules o WHERE o.position < r.position \
                  OR (o.position = r.position AND o.id < r.id)) \
                 FROM policy_rules r WHERE name_key = ?1",
                [&key],
                |r| {
                    let raw = RawRule {
                        id: r.get(0)?,
                        json: r.get(1)?,
                        created: r.get(2)?,
                        updated: r.get(3)?,
                        last_matched: r.get(4)?,
                    };
                    Ok((raw, r.get::<_, i64>(5)?))
                },
            )
            .optional()
        })?;
        raw.map(|(raw, position)| decode_rule(self.path(), &raw, position as usize)).transpose()
    }

    fn rule_add(&self, rule: FilterRule, at: Option<usize>) -> Result<usize, PolicyStoreError> {
        let (position, ..) = self.change(|s| {
            name_taken(s, &rule, None)?;
            let position = at.unwrap_or(s.rules.len());
            if position > s.rules.len() {
                return Err(bad_position(&rule.name, position, s.rules.len()));
            }
            let mut t = Target::of(s);
            t.rules.insert(position, (None, rule.clone()));
            Ok((t, position))
        })?;
        Ok(position)
    }

    fn rule_replace(&self, name: &str, rule: FilterRule) -> Result<(), PolicyStoreError> {
        self.change(|s| {
            let i = Self::rule_position(s, name)?;
            name_taken(s, &rule, Some(i))?;
            let mut t = Target::of(s);
            t.rules[i].1 = rule.clone();
            Ok((t, ()))
        })?;
        Ok(())
    }

    fn rule_remove(&self, name: &str) -> Result<(), PolicyStoreError> {
        self.change(|s| {
            let i = Self::rule_position(s, name)?;
            let mut t = Target::of(s);
            t.rules.remove(i);
            Ok((t, ()))
        })?;
        Ok(())
    }

    fn rule_move(&self, name: &str, to: usize) -> Result<(), PolicyStoreError> {
        self.change(|s| {
            let i = Self::rule_position(s, name)?;
            if to >= s.rules.len() {
                return Err(bad_position(name, to, s.rules.len()));
            }
            let mut t = Target::of(s);
            let r = t.rules.remove(i);
            t.rules.insert(to, r);
            Ok((t, ()))
        })?;
        Ok(())
    }

    fn rule_set_enabled(&self, name: &str, enabled: bool) -> Result<bool, PolicyStoreError> {
        let (changed, ..) = self.change(|s| {
            let i = Self::rule_position(s, name)?;
            let mut t = Target::of(s);
            let changed = t.rules[i].1.enabled != enabled;
            t.rules[i].1.enabled = enabled;
            Ok((t, changed))
        })?;
        Ok(changed)
    }

    fn list_entries(&self) -> Result<Vec<StoredEntry>, PolicyStoreError> {
        Ok(self.snapshot()?.entries)
    }

    fn list_add(&self, mut entry: ListEntry) -> Result<i64, PolicyStoreError> {
        entry.set_id(None);
        let json = entry.stored_json()?;
        let (_, _, _, ids) = self.change(|s| {
            if let Some(id) = s.entry_id(entry.list_name(), &json) {
                return Err(PolicyStoreError::Invalid {
                    item: entry.describe(),
                    field: "sender".into(),
                    reason: format!("the same entry is stored already, with id {id}"),
                });
            }
            let mut t = Target::of(s);
            t.entries.push((None, entry.clone()));
            Ok((t, ()))
        })?;
        Ok(ids[0])
    }

    fn list_remove(&self, id: i64) -> Result<(), PolicyStoreError> {
        self.change(|s| {
            let mut t = Target::of(s);
            let before = t.entries.len();
            t.entries.retain(|(i, _)| *i != Some(id));
            if t.entries.len() == before {
                return Err(PolicyStoreError::NoSuchEntry(id));
            }
            Ok((t, ()))
        })?;
        Ok(())
    }

    fn touch_list_entries(&self, ids: &[i64], now: i64) -> Result<(), PolicyStoreError> {
        let mut entries = ids.to_vec();
        entries.sort_unstable();
        entries.dedup();
        self.send_lazy(Touch { entries, rules: Vec::new(), now, failed: None })
    }

    fn touch_rules(&self, names: &[String], now: i64) -> Result<(), PolicyStoreError> {
        let mut rules: Vec<String> = names.iter().map(|n| name_key(n)).collect();
        rules.sort_unstable();
        rules.dedup();
        self.send_lazy(Touch { entries: Vec::new(), rules, now, failed: None })
    }

    fn import_policy(&self, toml: &str, mode: ImportMode) -> Result<ImportSummary, PolicyStoreError> {
        let file = parse_policy_toml(toml)?;
        // The file on its own first, so that an error names the item by its place in the file.
        validate_policy(&file)?;
        let mut seen = FxHashMap::default();
        let file_entries: Vec<(ListEntry, String)> = file
            .allow
            .iter()
            .cloned()
            .map(ListEntry::Allow)
            .chain(file.block.iter().cloned().map(ListEntry::Block))
            .map(|e| e.stored_json().map(|j| (e, j)))
            .collect::<Result<_, _>>()?;
        for (i, (e, json)) in file_entries.iter().enumerate() {
            let index = |i: usize| if i < file.allow.len() { i } else { i - file.allow.len() };
            if let Some(first) = seen.insert((e.list_name(), json.clone()), i) {
                return Err(PolicyStoreError::Invalid {
                    item: format!("{}[{}] {:?}", e.list_name(), index(i), e.sender()),
                    field: "sender".into(),
                    reason: format!("the same entry as {}[{}]", e.list_name(), index(first)),
                });
            }
        }
        let (_, summary, ..) = self.change(|s| {
            let stored_entry = |e: &ListEntry, json: &str| s.entry_id(e.list_name(), json);
            let mut t = Target::of(s);
            match mode {
                ImportMode::Replace => {
                    t.rules =
                        file.rules.iter().map(|r| (s.rule_index(&r.name).map(|i| s.rules[i].id), r.clone())).collect();
                    t.entries = file_entries.iter().map(|(e, json)| (stored_entry(e, json), e.clone())).collect();
                }
                ImportMode::Merge => {
                    for r in &file.rules {
                        match s.rule_index(&r.name) {
                            Some(i) => t.rules[i].1 = r.clone(),
                            None => t.rules.push((None, r.clone())),
                        }
                    }
                    for (e, json) in &file_entries {
                        if stored_entry(e, json).is_none() {
                            t.entries.push((None, e.clone()));
                        }
                    }
                }
            }
            Ok((t, ()))
        })?;
        Ok(summary)
    }

    fn export_policy(&self) -> Result<String, PolicyStoreError> {
        let p = self.load_policy()?;
        let body = policy_to_toml(&p.config)?;
        Ok(format!(
            "# mailsift policy (version {}): filter rules in order, then allowed and blocked senders.\n\
             # Import with `mailsift policy import FILE --replace`.\n\n{body}",
            p.version
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailsift_engine::policy::BlockAction;
    use mailsift_engine::verdict::EntryRef;

    fn rule(toml_text: &str) -> FilterRule {
        toml::from_str(toml_text).unwrap()
    }

    fn simple(name: &str) -> FilterRule {
        rule(&format!(
            "name = {name:?}\nconditions = [{{ field = \"subject\", op = \"contains\", value = \"{name}\" }}]\n\
             actions = [{{ action = \"tag\" }}]\n"
        ))
    }

    /// Runs `body` on each backend; `open` opens a handle on the same database (another handle stands for
    /// another process or node). SQLite in a temporary directory, then PostgreSQL (a private server; without
    /// it installed only SQLite runs, and under CI=true the test fails).
    fn each_backend(body: impl Fn(&dyn Fn() -> Database)) {
        let dir = tempfile::tempdir().unwrap();
        body(&|| Database::open_in(dir.path()).unwrap());
        if let Some(pg) = mailsift_testkit::postgres::Postgres::start() {
            let config = crate::pg::PgConfig::new(pg.url());
            body(&|| Database::open_postgres(&config).unwrap());
        }
    }

    fn names(db: &Database) -> Vec<String> {
        db.rules().unwrap().into_iter().map(|r| r.rule.name).collect()
    }

    fn allow(sender: &str, recipient: Option<&str>) -> ListEntry {
        ListEntry::Allow(AllowEntry {
            id: None,
            sender: sender.into(),
            recipient: recipient.map(Into::into),
            require_auth: false,
            from_ptr_domain: None,
            from_network: None,
            allow_spoofed: false,
            expires: None,
            comment: None,
        })
    }

    fn block(sender: &str) -> ListEntry {
        ListEntry::Block(BlockEntry {
            id: None,
            sender: sender.into(),
            recipient: None,
            action: BlockAction::Reject,
            expires: Some(1_900_000_000),
            comment: Some("offers".into()),
        })
    }

    const POLICY: &str = r#"
[[rules]]
name = "web forms"
comment = "the \"contact\" form on web01 sends as forms@\nsince 2024 — ask Zoë"
conditions = [
  { field = "envelope_from", op = "is", value = "forms@ourdomain.example" },
  { field = "header", header = "Received", op = "contains", value = "web01.hosting.example" },
  { field = "size", op = "below", value = 1000000 },
  { field = "recipient", op = "is", value = ["a@ourdomain.example", "b@ourdomain.example"], not = true },
  { field = "score", op = "above", value = 2.75 },
]
actions = [{ action = "allow" }]

[[rules]]
name = "open sesame"
direction = "outbound"
match = "any"
enabled = false
conditions = [{ field = "body", op = "contains", value = ["open sesame", "abracadabra"] }]
actions = [{ action = "add_score", score = -2.5 }, { action = "add_header", name = "X-Open", value = "sesame" }, { action = "stop" }]

[[rules]]
name = "invoices from the marketing service"
conditions = [
  { field = "any_header", op = "matches", value = "^Received: .*mta[0-9]+\\.mailer\\.example" },
  { field = "client_ip", op = "in_cidr", value = "198.51.100.0/24" },
]
actions = [{ action = "reject", message = "not here" }]

[[allow]]
sender = "partner.example"
recipient = "alice@ourdomain.example"
require_auth = true
expires = 1798761600

[[allow]]
sender = "news.example"
from_network = "203.0.113.0/24"

[[block]]
sender = "offers@spam.example"
action = "reject"
"#;

    #[test]
    fn rules_are_added_moved_switched_and_removed_in_order_each_change_a_new_version() {
        each_backend(|open| {
            let db = open();
            assert_eq!(db.policy_version().unwrap(), 0);
            assert_eq!(db.rule_add(simple("a"), None).unwrap(), 0);
            assert_eq!(db.rule_add(simple("b"), None).unwrap(), 1);
            assert_eq!(db.rule_add(simple("first"), Some(0)).unwrap(), 0);
            assert_eq!(names(&db), ["first", "a", "b"]);
            assert_eq!(db.policy_version().unwrap(), 3);

            // Found ignoring case and spaces, with its position.
            let a = db.rule_get(" A ").unwrap().unwrap();
            assert_eq!((a.position, a.rule.name.as_str()), (1, "a"));
            assert!(db.rule_get("zzz").unwrap().is_none());

            db.rule_move("first", 2).unwrap();
            assert_eq!(names(&db), ["a", "b", "first"]);
            assert_eq!(db.rule_get("first").unwrap().unwrap().position, 2);
            let id_before = db.rule_get("first").unwrap().unwrap().id;
            db.rule_move("FIRST", 0).unwrap();
            assert_eq!(names(&db), ["first", "a", "b"]);
            assert_eq!(db.rule_get("first").unwrap().unwrap().id, id_before, "a move keeps the row");
            assert_eq!(db.policy_version().unwrap(), 5);

            assert!(db.rule_disable("b").unwrap());
            assert!(!db.rule_disable("b").unwrap(), "already disabled");
            assert_eq!(db.policy_version().unwrap(), 6, "no change, no new version");
            assert!(!db.rule_get("b").unwrap().unwrap().rule.enabled);
            assert!(!db.load_policy().unwrap().config.rules[2].enabled);
            assert!(db.rule_enable("b").unwrap());
            assert!(db.rule_get("b").unwrap().unwrap().rule.enabled);

            // Replace where it stands, under a new name.
            db.rule_replace("a", simple("a2")).unwrap();
            assert_eq!(names(&db), ["first", "a2", "b"]);

            db.rule_remove("first").unwrap();
            assert_eq!(names(&db), ["a2", "b"]);
            assert_eq!(db.rule_get("b").unwrap().unwrap().position, 1);
            assert!(matches!(db.rule_remove("first"), Err(PolicyStoreError::NoSuchRule(n)) if n == "first"));
            assert!(
                matches!(db.rule_move("b", 2), Err(PolicyStoreError::Invalid { field, .. }) if field == "position")
            );
            assert_eq!(db.policy_version().unwrap(), 9);

            // The same again after reopening the database.
            drop(db);
            let db = open();
            assert_eq!(names(&db), ["a2", "b"]);
            assert_eq!(db.policy_version().unwrap(), 9);
        });
    }

    #[test]
    fn an_invalid_rule_is_refused_with_its_field_and_reason_and_nothing_is_written() {
        each_backend(|open| {
            let db = open();
            db.rule_add(simple("good"), None).unwrap();
            let bad = rule(
                "name = \"bad regex\"\nconditions = [{ field = \"subject\", op = \"contains\", value = \"x\" }, \
                 { field = \"subject\", op = \"matches\", value = \"(unclosed\" }]\nactions = [{ action = \"tag\" }]\n",
            );
            match db.rule_add(bad, None).unwrap_err() {
                PolicyStoreError::Invalid { item, field, reason } => {
                    assert_eq!(item, "rule \"bad regex\"");
                    assert!(field.starts_with("conditions[1]"), "{field}");
                    assert!(!reason.is_empty());
                }
                e => panic!("{e}"),
            }
            let cidr = rule(
                "name = \"net\"\nconditions = [{ field = \"client_ip\", op = \"in_cidr\", value = \"10.0.0.0/33\" }]\n\
                 actions = [{ action = \"allow\" }]\n",
            );
            let e = db.rule_add(cidr, None).unwrap_err().to_string();
            assert!(e.starts_with("rule \"net\": conditions[0]"), "{e}");
            // A duplicate name, ignoring case.
            let e = db.rule_add(simple("GOOD"), None).unwrap_err();
            assert!(matches!(&e, PolicyStoreError::Invalid { field, .. } if field == "name"), "{e}");
            // An entry with a bad network.
            let mut entry = allow("partner.example", None);
            if let ListEntry::Allow(a) = &mut entry {
                a.from_network = Some("198.51.100.0/99".into());
            }
            let e = db.list_add(entry).unwrap_err();
            assert!(matches!(&e, PolicyStoreError::Invalid { field, .. } if field == "from_network"), "{e}");

            assert_eq!(names(&db), ["good"]);
            assert!(db.list_entries().unwrap().is_empty());
            assert_eq!(db.policy_version().unwrap(), 1);
            let rows: i64 = match db.postgres() {
                Some(pg) => pg.call(|c| Ok(c.query_one("SELECT count(*) FROM policy_rules", &[])?.get(0))).unwrap(),
                None => db.read(|c| c.query_row("SELECT count(*) FROM policy_rules", [], |r| r.get(0))).unwrap(),
            };
            assert_eq!(rows, 1);
        });
    }

    #[test]
    fn a_bad_import_changes_nothing_and_names_the_item_in_the_file() {
        each_backend(|open| {
            let db = open();
            db.import_policy(POLICY, ImportMode::Replace).unwrap();
            let before = db.export_policy().unwrap();
            let version = db.policy_version().unwrap();

            let bad = format!(
                "{POLICY}\n[[rules]]\nname = \"late\"\nconditions = [{{ field = \"size\", op = \"above\", value = \"ten\" }}]\n\
                 actions = [{{ action = \"quarantine\" }}]\n"
            );
            for mode in [ImportMode::Replace, ImportMode::Merge] {
                let e = db.import_policy(&bad, mode).unwrap_err();
                match &e {
                    PolicyStoreError::Invalid { item, field, .. } => {
                        assert_eq!(item, "rules[3] \"late\"");
                        assert!(field.starts_with("conditions[0]"), "{field}");
                    }
                    e => panic!("{e}"),
                }
            }
            // Unknown keys: serde names the item.
            let e = db
                .import_policy("[[allow]]\nsender = \"x.example\"\nrequre_auth = true\n", ImportMode::Merge)
                .unwrap_err();
            assert!(
                matches!(&e, PolicyStoreError::Parse(m) if m.contains("requre_auth") && m.contains("x.example")),
                "{e}"
            );
            // The same entry twice.
            let e = db
                .import_policy(
                    "[[block]]\nsender = \"a.example\"\n[[block]]\nsender = \"a.example\"\n",
                    ImportMode::Merge,
                )
                .unwrap_err();
            assert_eq!(e.to_string(), "block[1] \"a.example\": sender: the same entry as block[0]");

            assert_eq!(db.export_policy().unwrap(), before);
            assert_eq!(db.policy_version().unwrap(), version);
        });
    }

    #[test]
    fn export_then_import_gives_the_same_policy() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_in(&dir.path().join("one")).unwrap();
        let s = db.import_policy(POLICY, ImportMode::Replace).unwrap();
        assert_eq!((s.rules_added, s.entries_added, s.version), (3, 3, 1));
        let exported = db.export_policy().unwrap();
        // Laid out as the documentation writes it.
        assert!(
            exported.contains(
                "[[rules]]\nname = \"web forms\"\ndirection = \"inbound\"\nmatch = \"all\"\ncomment = "
            ) && exported.contains(
                "\nconditions = [\n  { field = \"envelope_from\", op = \"is\", value = \"forms@ourdomain.example\" },\n"
            ) && exported.contains("  { field = \"header\", header = \"Received\", op = \"contains\", value = ")
                && exported.contains("\nactions = [\n  { action = \"allow\" },\n]\n"),
            "{exported}"
        );
        let original: PolicyConfig = toml::from_str(POLICY).unwrap();
        let loaded = db.load_policy().unwrap();
        assert_eq!(loaded.version, 1);
        let mut bare = loaded.config.clone();
        bare.allow.iter_mut().for_each(|e| e.id = None);
        bare.block.iter_mut().for_each(|e| e.id = None);
        assert_eq!(bare, original);
        // Ids come back with the entries, as the engine reports them.
        assert!(loaded
            .config
            .allow
            .iter()
            .chain([])
            .all(|e| e.id.as_deref().is_some_and(|i| i.parse::<i64>().is_ok())));

        let other = Database::open_in(&dir.path().join("two")).unwrap();
        other.import_policy(&exported, ImportMode::Replace).unwrap();
        assert_eq!(other.export_policy().unwrap(), exported);

        // Importing it again over itself changes nothing: same ids, same version.
        let ids: Vec<i64> = db.list_entries().unwrap().iter().map(|e| e.id).collect();
        let s = db.import_policy(&exported, ImportMode::Replace).unwrap();
        assert!(s.is_empty(), "{s:?}");
        assert_eq!(s.version, 1);
        assert_eq!(db.list_entries().unwrap().iter().map(|e| e.id).collect::<Vec<_>>(), ids);

        // A configuration file's [policy] table reads too.
        let config = "[thresholds]\ntag = 5.0\n\n[[policy.block]]\nsender = \"x.example\"\n";
        let s = other.import_policy(config, ImportMode::Merge).unwrap();
        assert_eq!((s.entries_added, s.rules_added), (1, 0));
    }

    #[test]
    fn replace_removes_what_the_file_lacks_and_merge_only_adds_or_replaces_by_name() {
        each_backend(|open| {
            let db = open();
            db.import_policy(POLICY, ImportMode::Replace).unwrap();
            let web_forms_id = db.rule_get("web forms").unwrap().unwrap().id;

            let merge = r#"
    [[rules]]
    name = "Web Forms"
    actions = [{ action = "quarantine" }]
    [[rules]]
    name = "new one"
    actions = [{ action = "tag" }]
    [[block]]
    sender = "offers@spam.example"
    action = "reject"
    [[block]]
    sender = "more.example"
    "#;
            let s = db.import_policy(merge, ImportMode::Merge).unwrap();
            assert_eq!((s.rules_added, s.rules_changed, s.rules_removed), (1, 1, 0));
            assert_eq!((s.entries_added, s.entries_removed), (1, 0));
            assert_eq!(names(&db), ["Web Forms", "open sesame", "invoices from the marketing service", "new one"]);
            assert_eq!(db.rule_get("web forms").unwrap().unwrap().id, web_forms_id, "replaced where it stood");
            assert_eq!(db.list_entries().unwrap().len(), 4);

            let s = db.import_policy(merge, ImportMode::Replace).unwrap();
            assert_eq!((s.rules_removed, s.entries_removed), (2, 2));
            assert_eq!(names(&db), ["Web Forms", "new one"]);
            let senders: Vec<String> =
                db.list_entries().unwrap().iter().map(|e| e.entry.sender().to_string()).collect();
            assert_eq!(senders, ["offers@spam.example", "more.example"]);

            let s = db.import_policy("", ImportMode::Replace).unwrap();
            assert_eq!((s.rules_removed, s.entries_removed), (2, 2));
            assert!(db.load_policy().unwrap().config.is_empty());
        });
    }

    #[test]
    fn entries_are_added_listed_removed_and_remember_when_they_last_matched() {
        each_backend(|open| {
            let db = open();
            let a = db.list_add(allow("partner.example", Some("alice@ourdomain.example"))).unwrap();
            let b = db.list_add(block("offers@spam.example")).unwrap();
            let c = db.list_add(allow("partner.example", Some("ourdomain.example"))).unwrap();
            assert!(a < b && b < c);
            let e = db.list_add(allow("partner.example", Some("alice@ourdomain.example"))).unwrap_err();
            assert!(e.to_string().contains(&format!("id {a}")), "{e}");
            assert_eq!(db.policy_version().unwrap(), 3);

            let entries = db.list_entries().unwrap();
            assert_eq!(entries.iter().map(|e| e.id).collect::<Vec<_>>(), [a, b, c]);
            assert_eq!(entries[0].entry.level(), Level::User);
            assert_eq!(entries[2].entry.level(), Level::Domain);
            assert_eq!(entries[1].entry.id(), Some(b.to_string().as_str()));
            assert!(entries.iter().all(|e| e.last_matched.is_none() && e.created > 0));
            let ListEntry::Block(stored) = &entries[1].entry else { panic!() };
            assert_eq!(
                (stored.action, stored.expires, stored.comment.as_deref()),
                (BlockAction::Reject, Some(1_900_000_000), Some("offers"))
            );

            // The gateway reports what matched, as the verdict says it.
            let matched = |id: i64, honoured: bool| PolicyMatch::Entry {
                entry: EntryRef {
                    list: ListKind::Allow,
                    index: 0,
                    id: Some(id.to_string()),
                    level: Level::User,
                    sender: "partner.example".into(),
                    recipient: None,
                },
                honoured,
            };
            db.touch_policy_matches(&[matched(a, true), matched(c, false)], 1_000).unwrap();
            db.touch_list_entries(&[b, b, 9999], 2_000).unwrap();
            db.touch_list_entries(&[b], 1_500).unwrap(); // older: kept at 2000
            db.flush().unwrap();
            let last: Vec<Option<i64>> = db.list_entries().unwrap().iter().map(|e| e.last_matched).collect();
            assert_eq!(last, [Some(1_000), Some(2_000), None]);
            assert_eq!(db.policy_version().unwrap(), 3, "a match is not a change of policy");

            db.rule_add(simple("r"), None).unwrap();
            db.touch_policy_matches(&[PolicyMatch::Rule { name: "R".into(), index: 0 }], 3_000).unwrap();
            db.flush().unwrap();
            assert_eq!(db.rule_get("r").unwrap().unwrap().last_matched, Some(3_000));

            db.list_remove(b).unwrap();
            assert!(matches!(db.list_remove(b), Err(PolicyStoreError::NoSuchEntry(x)) if x == b));
            let d = db.list_add(block("offers@spam.example")).unwrap();
            assert!(d > c, "ids are never reused");
            assert_eq!(db.list_entries().unwrap().len(), 3);
        });
    }

    #[test]
    fn another_connection_sees_each_change_and_concurrent_changes_all_land() {
        each_backend(|open| {
            let writer = open();
            // A second handle stands for another process (the gateway reading while the CLI writes).
            let reader = open();
            assert_eq!(reader.policy_version().unwrap(), 0);
            writer.rule_add(simple("one"), None).unwrap();
            assert_eq!(reader.policy_version().unwrap(), 1);
            assert_eq!(names(&reader), ["one"]);
            writer.rule_disable("one").unwrap();
            let p = reader.load_policy().unwrap();
            assert_eq!(p.version, 2);
            assert!(!p.config.rules[0].enabled);

            // Two writers at once, through different handles: each change is made again on the other's result.
            let threads: Vec<_> = [writer.clone(), reader.clone()]
                .into_iter()
                .enumerate()
                .map(|(t, db)| {
                    std::thread::spawn(move || {
                        for i in 0..15 {
                            db.rule_add(simple(&format!("t{t}-{i}")), Some(0)).unwrap();
                            db.list_add(block(&format!("s{t}-{i}.example"))).unwrap();
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            let p = writer.load_policy().unwrap();
            assert_eq!(p.config.rules.len(), 31);
            assert_eq!(p.config.block.len(), 30);
            assert_eq!(p.version, 2 + 60);
            assert_eq!(p.config.rules.last().unwrap().name, "one");
        });
    }
}
