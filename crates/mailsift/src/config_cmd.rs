//! The configuration file, read once: one typed [`Config`] (the engine's tables, `[smtp]` and `[web]`)
//! loaded by [`load`] for every subcommand, and `mailsift config dump`, the effective configuration as TOML
//! the way `postconf -n` and `rspamadm configdump` show theirs.
//!
//! Three crates own a part of the file (the engine its own tables, mailsift-smtp `[smtp]`, mailsift-web
//! `[web]`), and each refuses keys it does not know. Their errors name a key but not the table it is in,
//! and stop at the first; an administrator fixing a file wants every unknown key named with its full path
//! at once, so [`load`] collects them before reporting.
//!
//! Two settings have a second source of truth in the data directory's database: the domains (`mailsift
//! domains`, the console) and the policy (`mailsift rules` / `lists` / `policy import`). The dump shows
//! where every entry comes from and the precedence the gateway applies (see [`PRECEDENCE`]).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use mailsift_engine::policy::PolicyConfig;
use mailsift_engine::{Engine, EngineConfig};
use mailsift_smtp::config::{DomainConfig, SmtpConfig};
use mailsift_web::WebConfig;
use serde::Deserialize;

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Load the configuration (--config) as `serve` does, without listening: every section, the
    /// certificate and key, the DNS resolver, the data directory's stores. Prints what it would run and
    /// warns about what production needs (exit 0), or names the error (exit 2).
    Check,
    /// Print the effective configuration as TOML: every setting with its value (defaults included), the
    /// domains and policy stored in the data directory marked as such, secrets shown as "<hidden>".
    Dump {
        /// Only what differs from the embedded defaults (as `postconf -n`).
        #[arg(long)]
        non_default: bool,
    },
}

#[derive(Subcommand)]
pub enum StoreCommand {
    /// Where the gateway's state is and whether this mailsift can use it as it is, changing nothing.
    Check,
    /// Create an empty gateway database in the data directory (as the first `serve` would), for setting
    /// accounts, domains and policy up before the gateway first runs. Refuses when one exists.
    Create,
    /// Copies this data directory's SQLite state (gateway database, classifier, reputation) into an empty
    /// PostgreSQL database, all or nothing, and prints every table's rows on both sides. Stop the gateway
    /// first; afterwards set `[store] backend = "postgres"` and the URL in the configuration.
    Migrate {
        /// The PostgreSQL database, `postgresql://user@host:port/database` (better without a password:
        /// use --password-file).
        #[arg(long)]
        to: String,
        /// A file holding the password (its first line).
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// PEM certificate authorities to trust for TLS instead of the system's.
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
}

/// `mailsift store migrate`: see [`StoreCommand::Migrate`]. Prints a line per table; fails (exit 1,
/// PostgreSQL unchanged) when any count differs or the database already holds state.
pub fn store_migrate(data_dir: &Path, to: &str, password_file: Option<&Path>, ca_file: Option<&Path>) -> Result<()> {
    let mut target = mailsift_store::pg::PgConfig::new(to.to_string());
    target.password_file = password_file.map(Path::to_path_buf);
    target.ca_file = ca_file.map(Path::to_path_buf);
    target.pool_size = 1;
    let shown = target.describe();
    println!("migrating {} into {shown}", data_dir.display());
    let counted = mailsift_store::migrate::to_postgres(data_dir, &target)
        .with_context(|| format!("migration into {shown} failed; the database is unchanged"))?;
    println!("{:<30} {:>10} {:>10}", "table", "sqlite", "postgresql");
    for c in &counted {
        println!("{:<30} {:>10} {:>10}", c.table, c.sqlite, c.postgres);
    }
    let rows: u64 = counted.iter().map(|c| c.postgres).sum();
    println!(
        "migrated: {rows} rows in {} tables, every count equal. Now set in the configuration:\n  [store]\n  \
         backend = \"postgres\"\n  url = \"{}\"",
        counted.len(),
        hide_url_password(to)
    );
    Ok(())
}

/// `mailsift store create`: see [`StoreCommand::Create`].
pub fn store_create(config: Option<&PathBuf>, data_dir: &Path) -> Result<()> {
    let store = load(config.map(PathBuf::as_path))?.store;
    if store.postgres()?.is_some() {
        bail!("[store] is PostgreSQL ({}): `mailsift serve` creates its tables", store.describe(data_dir));
    }
    let file = data_dir.join(mailsift_store::gateway::FILE_NAME);
    if file.exists() {
        bail!("{}: a gateway database exists already", file.display());
    }
    let db = mailsift_store::Database::open(&file)?;
    println!("created {} (schema version {})", file.display(), db.schema_version()?);
    Ok(())
}

/// `mailsift store check`: exit 0 when the store is usable as it is (or will be brought up to date by the
/// next `serve`), 2 when its schema is newer than this mailsift or a search would be wrong.
pub fn store_check(config: Option<&PathBuf>, data_dir: &Path) -> Result<std::process::ExitCode> {
    let store = load(config.map(PathBuf::as_path))?.store;
    let report = store.inspect(data_dir)?;
    println!("store:     {}", report.location);
    let mut bad = report.problems.clone();
    match report.version {
        None => println!("schema:    no database yet (`mailsift serve` creates it)"),
        Some(v) if v == report.expected => println!("schema:    version {v}, this mailsift's"),
        Some(v) if v < report.expected => println!(
            "schema:    version {v}, older than this mailsift's {}: the next `mailsift serve` applies the steps",
            report.expected
        ),
        Some(v) => bad.push(format!(
            "schema version {v} is newer than this mailsift's {}: upgrade mailsift before serving",
            report.expected
        )),
    }
    for n in &report.notes {
        println!("note:      {n}");
    }
    for b in &bad {
        println!("PROBLEM:   {b}");
    }
    Ok(if bad.is_empty() { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::from(2) })
}

/// The whole configuration file, parsed and checked once; the default is the embedded defaults.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The file it came from; None for the embedded defaults.
    pub source: Option<PathBuf>,
    /// The engine's tables (everything but `[smtp]` and `[web]`, which it carries unread).
    pub engine: EngineConfig,
    /// `[smtp]`, validated.
    pub smtp: SmtpConfig,
    /// `[web]`, validated.
    pub web: WebConfig,
    /// `[store]`, validated (where the gateway database is).
    pub store: mailsift_store::StoreConfig,
    /// `[redis]`, when there is one: where several nodes share reputation.
    pub redis: Option<mailsift_store::RedisConfig>,
}

impl Config {
    /// Parses the text of a configuration file: every table by its owner's parser and validation. Unknown
    /// keys anywhere are reported together, each by its full path.
    pub fn from_toml(text: &str) -> Result<Config> {
        let unknown = unknown_keys(text);
        if !unknown.is_empty() {
            bail!("{}", describe_unknown(&unknown));
        }
        let engine = EngineConfig::from_toml(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let smtp = SmtpConfig::from_toml(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let web = WebConfig::from_toml(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let store =
            mailsift_store::StoreConfig::from_value(engine.store.as_ref()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let redis = match &engine.redis {
            None => None,
            Some(v) => Some(
                v.clone()
                    .try_into::<mailsift_store::RedisConfig>()
                    .map_err(|e| anyhow::anyhow!("[redis]: {}", e.message()))?,
            ),
        };
        Ok(Config { source: None, engine, smtp, web, store, redis })
    }

    /// Where the configuration came from, for messages.
    pub fn origin(&self) -> String {
        self.source.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "embedded defaults".into())
    }

    /// The engine of this configuration (its rules compiled and checked), without a classifier model.
    pub fn engine(&self) -> Result<Engine> {
        Engine::new(self.engine.clone()).with_context(|| format!("{}: invalid configuration", self.origin()))
    }
}

/// The gateway database as the configuration's `[store]` says (the data directory's SQLite file, created
/// when missing, or PostgreSQL). Every command that reads or changes the gateway's state opens it here.
///
/// On SQLite the file must exist: only `serve` and `init` create a gateway database. A command run from
/// the wrong directory (or with the wrong configuration) would otherwise make a second, empty one and act
/// on it; it fails with [`crate::datadir::NoDatabase`] instead, which `main` words with where it looked.
pub fn database(config: Option<&PathBuf>, data_dir: &Path) -> Result<mailsift_store::Database> {
    let store = load(config.map(PathBuf::as_path))?.store;
    if store.postgres()?.is_none() {
        crate::datadir::require_gateway_database(data_dir)?;
    }
    Ok(mailsift_store::Database::open_configured(data_dir, &store)?)
}

/// The classifier's store where `[store]` puts the gateway's state: in the shared PostgreSQL database, or
/// `classifier.sqlite` in the data directory (made when missing).
pub fn classifier_store(config: Option<&PathBuf>, data_dir: &Path) -> Result<mailsift_store::ClassifierStore> {
    let store = load(config.map(PathBuf::as_path))?.store;
    if store.postgres()?.is_none() {
        return Ok(mailsift_store::SqliteStore::open_dir(data_dir)?.into());
    }
    let db = database(config, data_dir)?;
    Ok(mailsift_store::ClassifierStore::open(data_dir, &db)?)
}

/// Reputation where `[redis]` and `[store]` put it: Redis, else the shared PostgreSQL database, else
/// `reputation.sqlite` in the data directory; evidence halves every `half_life_days`.
pub fn reputation_store(
    config: Option<&PathBuf>,
    data_dir: &Path,
    half_life_days: f64,
) -> Result<mailsift_store::Reputation> {
    let loaded = load(config.map(PathBuf::as_path))?;
    if loaded.redis.is_none() && loaded.store.postgres()?.is_none() {
        return Ok(mailsift_store::Reputation::open_dir(data_dir, half_life_days)?);
    }
    if loaded.store.postgres()?.is_none() {
        // With Redis, the gateway database is still the data directory's (what `database` refuses to make).
        crate::datadir::require_gateway_database(data_dir)?;
    }
    let db = database(config, data_dir)?;
    Ok(mailsift_store::open_reputation(data_dir, &db, loaded.redis.as_ref(), half_life_days)?)
}

/// As [`database`], but `None` when the store is SQLite and the data directory has no database yet.
/// The gateway database the read-and-act commands (log, quarantine, queue) work on; an error saying where
/// it was looked for when there is none (they never create one).
pub fn required_database(config: Option<&PathBuf>, data_dir: &Path) -> Result<mailsift_store::Database> {
    match existing_database(config, data_dir)? {
        Some(db) => Ok(db),
        None => Err(crate::datadir::require_gateway_database(data_dir).err().map(anyhow::Error::from).unwrap_or_else(
            || anyhow::anyhow!("{}: the gateway database disappeared while opening it", data_dir.display()),
        )),
    }
}

pub fn existing_database(config: Option<&PathBuf>, data_dir: &Path) -> Result<Option<mailsift_store::Database>> {
    let store = load(config.map(PathBuf::as_path))?.store;
    Ok(mailsift_store::Database::open_existing(data_dir, &store)?)
}

/// Reads and parses the configuration file, or gives the embedded defaults without one. Every subcommand
/// loads its configuration here, so a file means the same to all of them.
pub fn load(path: Option<&Path>) -> Result<Config> {
    let Some(p) = path else { return Ok(Config::default()) };
    let text = std::fs::read_to_string(p).with_context(|| format!("{}: cannot read configuration", p.display()))?;
    let mut config = Config::from_toml(&text).with_context(|| format!("{}: invalid configuration", p.display()))?;
    config.source = Some(p.to_path_buf());
    Ok(config)
}

// ---------------------------------------------------------------------------------------------------------
// Unknown keys

/// Most unknown keys collected before the rest are summed up: a file that is mostly wrong needs fixing at
/// the first few, and each one costs a parse of the file.
const MAX_UNKNOWN: usize = 16;

/// Most segments a key path may have to be looked up; deeper ones are reported without being removed (the
/// configuration's own tables are at most four deep).
const MAX_PATH_DEPTH: usize = 16;

#[derive(Debug, Clone, PartialEq)]
struct Unknown {
    /// The key's full path, e.g. `smtp.tls.bogus`.
    path: Vec<String>,
    /// Its line in the file (1-based), when known.
    line: Option<usize>,
    /// The keys its table accepts, as the parser says them.
    expected: String,
}

/// `[smtp]` alone, with the span-carrying error of the TOML parser (SmtpConfig::from_toml gives a string).
#[derive(Deserialize)]
struct SmtpFile {
    #[serde(default)]
    #[allow(dead_code)]
    smtp: SmtpConfig,
}

#[derive(Deserialize)]
struct StoreFile {
    #[serde(default)]
    #[allow(dead_code)]
    store: mailsift_store::StoreConfig,
}

#[derive(Deserialize)]
struct WebFile {
    #[serde(default)]
    #[allow(dead_code)]
    web: WebConfig,
}

/// The first key one of the three parsers refuses as unknown, with where it is.
fn first_unknown(text: &str) -> Option<Unknown> {
    let errors = [
        toml::from_str::<EngineConfig>(text).err(),
        toml::from_str::<SmtpFile>(text).err(),
        toml::from_str::<WebFile>(text).err(),
        toml::from_str::<StoreFile>(text).err(),
    ];
    for e in errors.into_iter().flatten() {
        let message = e.message();
        let Some(rest) = message.strip_prefix("unknown field `") else { continue };
        let name = rest.split('`').next().unwrap_or_default().to_string();
        let expected = message.split_once("expected ").map(|(_, x)| x.trim().to_string()).unwrap_or_default();
        let (path, line) = match e.span() {
            Some(span) => key_path_at(text, span.start, span.end),
            None => (vec![name.clone()], None),
        };
        // The parser's name is the truth for the last segment (a quoted key, an odd spacing).
        let mut path = if path.is_empty() { vec![name.clone()] } else { path };
        if let Some(last) = path.last_mut() {
            *last = name;
        }
        return Some(Unknown { path, line, expected });
    }
    None
}

/// Every unknown key of the file (at most [`MAX_UNKNOWN`]): the first as the parsers see it, then each
/// further one after the previous ones are taken out of a copy of the file.
fn unknown_keys(text: &str) -> Vec<Unknown> {
    let mut found = Vec::new();
    let Some(first) = first_unknown(text) else { return found };
    let Ok(mut raw) = toml::from_str::<toml::Table>(text) else {
        found.push(first);
        return found;
    };
    let mut next = Some(first);
    while let Some(u) = next.take() {
        let removed = remove_path(&mut raw, &u.path);
        found.push(u);
        if !removed || found.len() >= MAX_UNKNOWN {
            break;
        }
        let Ok(rest) = toml::to_string(&raw) else { break };
        // Lines of the rewritten copy are not the file's: find the key's line in the file instead.
        next = first_unknown(&rest).map(|mut u| {
            u.line = line_of(text, &u.path);
            u
        });
    }
    found
}

fn describe_unknown(unknown: &[Unknown]) -> String {
    let names: Vec<String> = unknown
        .iter()
        .map(|u| match u.line {
            Some(l) => format!("`{}` (line {l})", u.path.join(".")),
            None => format!("`{}`", u.path.join(".")),
        })
        .collect();
    let mut text = format!(
        "unknown setting{} {}: not a key mailsift reads (a typo, or a key of another table?); \
         `mailsift config dump` prints every key with its default",
        if unknown.len() == 1 { "" } else { "s" },
        names.join(", ")
    );
    if let Some(u) = unknown.first() {
        let table = &u.path[..u.path.len().saturating_sub(1)];
        let table = if table.is_empty() { "the top level".to_string() } else { format!("[{}]", table.join(".")) };
        if !u.expected.is_empty() {
            text.push_str(&format!("\n{table} takes: {}", u.expected));
        }
    }
    text
}

/// The full path of the key whose text is at `start..end` of `text`, and its line: the enclosing `[table]`
/// or `[[array]]` header, the inline tables open on its line before it, and the key itself.
fn key_path_at(text: &str, start: usize, end: usize) -> (Vec<String>, Option<usize>) {
    let (start, end) = (start.min(text.len()), end.min(text.len()).max(start.min(text.len())));
    if !text.is_char_boundary(start) || !text.is_char_boundary(end) {
        return (Vec::new(), None);
    }
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line = text[..start].matches('\n').count() + 1;
    let prefix = text[line_start..end].trim_start();
    if let Some(header) = prefix.strip_prefix('[') {
        // The key is (part of) a table header: its path is the header up to the key.
        return (split_key(header.trim_start_matches('[')), Some(line));
    }
    let mut path = text[..line_start]
        .lines()
        .rev()
        .map(str::trim_start)
        .find(|l| l.starts_with('['))
        .map(|h| {
            let inner = h.trim_start_matches('[');
            let inner = inner.split(']').next().unwrap_or_default();
            split_key(inner)
        })
        .unwrap_or_default();
    // `digest = { bogus = 2 }`: every `key = {` before the unknown key opens a table it belongs to.
    let parts: Vec<&str> = prefix.split('{').collect();
    for part in &parts[..parts.len() - 1] {
        let key = part.rsplit(',').next().unwrap_or_default();
        let key = key.rsplit_once('=').map_or(key, |(k, _)| k);
        path.extend(split_key(key));
    }
    let last = parts.last().copied().unwrap_or_default();
    path.extend(split_key(last.rsplit(',').next().unwrap_or_default()));
    (path, Some(line))
}

/// The segments of a dotted key, quotes removed (`a."b.c"` is `a`, `b.c`).
fn split_key(key: &str) -> Vec<String> {
    let mut segments = Vec::new();
    let mut current = String::new();
    let mut quote = None;
    for c in key.chars() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '.') => segments.push(std::mem::take(&mut current)),
            (None, '=' | ']') => break,
            (None, c) if c.is_whitespace() => {}
            (_, c) => current.push(c),
        }
    }
    segments.push(current);
    segments.into_iter().filter(|s| !s.is_empty()).collect()
}

/// The first line of `text` where the key at `path` is set or its table opens (best effort, for messages
/// only): headers are followed, and one level of inline table (`digest = { from = "x" }`).
fn line_of(text: &str, path: &[String]) -> Option<usize> {
    let mut header: Vec<String> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if let Some(inner) = l.strip_prefix('[') {
            header = split_key(inner.trim_start_matches('['));
            if header == path {
                return Some(i + 1);
            }
            continue;
        }
        let Some((key, value)) = l.split_once('=') else { continue };
        let mut at = header.clone();
        at.extend(split_key(key));
        if at == path {
            return Some(i + 1);
        }
        if let Some(inline) = value.trim_start().strip_prefix('{') {
            for part in inline.split(',') {
                if let Some((k, _)) = part.split_once('=') {
                    let mut inner = at.clone();
                    inner.extend(split_key(k));
                    if inner == path {
                        return Some(i + 1);
                    }
                }
            }
        }
    }
    None
}

/// Takes the key at `path` out of the table (out of every table of an array on the way). Whether anything
/// was removed.
fn remove_path(table: &mut toml::Table, path: &[String]) -> bool {
    if path.is_empty() || path.len() > MAX_PATH_DEPTH {
        return false;
    }
    // Iterative over the path: each step holds the tables that path prefix reaches.
    let mut tables: Vec<&mut toml::Table> = vec![table];
    for segment in &path[..path.len() - 1] {
        let mut next = Vec::new();
        for t in tables {
            match t.get_mut(segment.as_str()) {
                Some(toml::Value::Table(inner)) => next.push(inner),
                Some(toml::Value::Array(items)) => {
                    next.extend(items.iter_mut().filter_map(|v| v.as_table_mut()));
                }
                _ => {}
            }
        }
        tables = next;
    }
    let last = &path[path.len() - 1];
    let mut removed = false;
    for t in tables {
        removed |= t.remove(last.as_str()).is_some();
    }
    removed
}

// ---------------------------------------------------------------------------------------------------------
// config dump

/// What the gateway does with the two sources of domains and policy (state.rs `with_domains`, scanner.rs
/// `domains`, state.rs `refresh_policy`), said once in the dump's header.
pub const PRECEDENCE: &str = "\
# Domains: the configuration's [[smtp.domains]] and the database's (mailsift domains, the console). A stored
# domain replaces a configured one of the same name (compared without case), whole: none of the file's
# settings for it remain. Configured domains come first, stored ones after. Domains with sending servers or
# trusted relays are also protected ([organisation] protected), and their spamtraps join [classifier]
# spamtraps, when the gateway starts.
# Policy: the configuration's [policy] first, then the database's (mailsift rules, lists, policy import).
# Both apply: nothing is replaced; rules are evaluated in that order.";

/// The text that stands for a secret.
pub const HIDDEN: &str = "<hidden>";

/// Keys whose values are secrets wherever they appear.
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k == "password"
        || k == "passwd"
        || k == "passphrase"
        || k == "token"
        || k.ends_with("_password")
        || k.contains("secret")
        || k.contains("api_key")
        || k.contains("apikey")
        || k.contains("hmac")
        || k.contains("private_key")
}

/// Values that are secret whatever their key: key material and password hashes.
fn is_secret_value(s: &str) -> bool {
    s.contains("-----BEGIN") || s.starts_with("$argon2") || s.starts_with("sha256:")
}

/// A database URL with its password, if it holds one, replaced by [`HIDDEN`]: `scheme://user:secret@host`
/// and the key/value form's `password=secret`.
fn hide_url_password(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(start) = out.find("://").map(|i| i + 3) {
        let authority_end = out[start..].find(['/', '?']).map_or(out.len(), |i| start + i);
        if let Some(at) = out[start..authority_end].rfind('@').map(|i| start + i) {
            if let Some(colon) = out[start..at].find(':').map(|i| start + i) {
                out.replace_range(colon + 1..at, HIDDEN);
            }
        }
    }
    for key in ["password=", "PASSWORD="] {
        let mut at = 0;
        while let Some(i) = out[at..].find(key) {
            let from = at + i + key.len();
            let end = out[from..].find([' ', '&']).map_or(out.len(), |j| from + j);
            out.replace_range(from..end, HIDDEN);
            at = from + HIDDEN.len();
        }
    }
    out
}

/// Replaces every secret in the tree with [`HIDDEN`]. The tree is the serialized configuration, whose
/// depth is fixed by its types, not by the file.
fn hide_secrets(value: &mut toml::Value) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                if is_secret_key(k) && !matches!(v, toml::Value::Table(_) | toml::Value::Boolean(_)) {
                    *v = toml::Value::String(HIDDEN.into());
                } else {
                    hide_secrets(v);
                }
            }
        }
        toml::Value::Array(items) => items.iter_mut().for_each(hide_secrets),
        toml::Value::String(s) if is_secret_value(s) => *s = HIDDEN.into(),
        _ => {}
    }
}

fn to_table<T: serde::Serialize>(what: &str, value: &T) -> Result<toml::Table> {
    match toml::Value::try_from(value).with_context(|| format!("{what}: cannot be written as TOML"))? {
        toml::Value::Table(t) => Ok(t),
        _ => bail!("{what}: not a table"),
    }
}

/// The configuration as one TOML tree, without the entries that have a second source (the domains and the
/// policy), which the dump writes one by one with where each comes from.
fn main_tree(config: &Config) -> Result<toml::Table> {
    let mut engine = config.engine.clone();
    engine.smtp = None;
    engine.web = None;
    engine.policy = PolicyConfig::default();
    engine.store = None;
    engine.redis = None;
    let mut tree = to_table("the engine's configuration", &engine)?;
    let mut store = config.store.clone();
    store.url = store.url.map(|u| hide_url_password(&u));
    tree.insert("store".into(), toml::Value::Table(to_table("[store]", &store)?));
    if let Some(redis) = &config.redis {
        let mut redis = redis.clone();
        redis.url = hide_url_password(&redis.url);
        tree.insert("redis".into(), toml::Value::Table(to_table("[redis]", &redis)?));
    }
    let mut smtp = to_table("[smtp]", &config.smtp)?;
    smtp.remove("domains");
    tree.insert("smtp".into(), toml::Value::Table(smtp));
    tree.insert("web".into(), toml::Value::Table(to_table("[web]", &config.web)?));
    Ok(tree)
}

/// What of `value` differs from `default`: tables key by key, anything else whole.
fn differences(value: &toml::Table, default: &toml::Table) -> toml::Table {
    let mut out = toml::Table::new();
    for (k, v) in value {
        match (v, default.get(k)) {
            (toml::Value::Table(t), Some(toml::Value::Table(d))) => {
                let inner = differences(t, d);
                if !inner.is_empty() {
                    out.insert(k.clone(), toml::Value::Table(inner));
                }
            }
            (v, Some(d)) if v == d => {}
            (v, _) => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

/// The data directory's domains and policy, when it has a database (never creating one).
fn stored(config: &Config, data_dir: &Path) -> Result<(Vec<DomainConfig>, PolicyConfig)> {
    let file = config.store.describe(data_dir);
    let Some(db) = mailsift_store::Database::open_existing(data_dir, &config.store)
        .with_context(|| format!("{file}: cannot open the database"))?
    else {
        return Ok((Vec::new(), PolicyConfig::default()));
    };
    let domains = db
        .domains()
        .with_context(|| format!("{file}: the stored domains do not read"))?
        .into_iter()
        .map(|(name, json)| {
            serde_json::from_str(&json).with_context(|| format!("stored domain {name}: its settings do not read"))
        })
        .collect::<Result<Vec<DomainConfig>>>()?;
    use mailsift_store::PolicyStore;
    let policy = db.load_policy().with_context(|| format!("{file}: the stored policy does not read"))?;
    Ok((domains, policy.config))
}

/// One entry of an array of tables (`[[smtp.domains]]`, `[[policy.rules]]` …) as TOML, under its full path.
fn entry_toml(path: &[&str], entry: toml::Table) -> Result<String> {
    let mut value = toml::Value::Array(vec![toml::Value::Table(entry)]);
    for segment in path.iter().rev() {
        let mut t = toml::Table::new();
        t.insert((*segment).to_string(), value);
        value = toml::Value::Table(t);
    }
    hide_secrets(&mut value);
    toml::to_string(&value).with_context(|| format!("{}: cannot be written as TOML", path.join(".")))
}

fn commented(text: &str) -> String {
    text.lines().map(|l| if l.is_empty() { "#\n".to_string() } else { format!("# {l}\n") }).collect()
}

/// The dump as text (see `mailsift config dump`).
///
/// `data_dir_from` says how the data directory was chosen; `data_dir` is written as a key (the effective
/// one), by `--non-default` only when something chose it (not the zero-configuration default).
pub fn dump_text(config: &Config, data_dir: &Path, data_dir_from: &str, non_default: bool) -> Result<String> {
    let (stored_domains, stored_policy) = stored(config, data_dir)?;
    let database = config.store.describe(data_dir);
    let mut out = String::new();
    out.push_str(&format!(
        "# mailsift config dump{}: the effective configuration of {} with the data directory {}\n",
        if non_default { " --non-default" } else { "" },
        config.origin(),
        data_dir.display()
    ));
    out.push_str(if non_default {
        "# Only settings that differ from the embedded defaults.\n"
    } else {
        "# Every setting with its value, defaults included; settings without a value (unset options) are left \
         out.\n"
    });
    out.push_str(&format!(
        "# Secrets are shown as \"{HIDDEN}\". Entries marked `source: database` come from {}.\n",
        database
    ));
    out.push_str(PRECEDENCE);
    out.push('\n');
    out.push_str(&format!("# data_dir: {data_dir_from}\n"));

    let mut main = main_tree(config)?;
    if non_default {
        main = differences(&main, &main_tree(&Config::default())?);
    }
    // The file's data_dir as every command resolves it (against the file's directory), so the dump reads
    // back as the same configuration from anywhere; the header's comment says which directory is in effect.
    if let Some(key) = &config.engine.data_dir {
        let base = config.source.as_deref().and_then(|f| std::path::absolute(f).ok()?.parent().map(Path::to_path_buf));
        let resolved = match base {
            Some(b) if key.is_relative() => b.join(key),
            _ => key.clone(),
        };
        main.insert("data_dir".into(), toml::Value::String(resolved.display().to_string()));
    }
    let mut main = toml::Value::Table(main);
    hide_secrets(&mut main);
    if main.as_table().is_some_and(|t| !t.is_empty()) {
        out.push('\n');
        out.push_str(&toml::to_string(&main).context("the configuration cannot be written as TOML")?);
    }

    // Domains in the order the gateway has them: the configured ones a stored one does not replace, then
    // the stored ones, each after the configured entry it replaces (commented out).
    let default_domain = to_table("a domain", &DomainConfig::default())?;
    let domain_entry = |d: &DomainConfig| -> Result<toml::Table> {
        let t = to_table(&format!("domain {}", d.name), d)?;
        if !non_default {
            return Ok(t);
        }
        let mut t = differences(&t, &default_domain);
        t.insert("name".into(), toml::Value::String(d.name.clone()));
        Ok(t)
    };
    let in_effect = mailsift_gateway::config::merge_domains(&config.smtp.domains, &stored_domains);
    let not_replaced = &in_effect[..in_effect.len() - stored_domains.len()];
    for d in not_replaced {
        out.push_str("\n# source: configuration file\n");
        out.push_str(&entry_toml(&["smtp", "domains"], domain_entry(d)?)?);
    }
    for s in &stored_domains {
        out.push('\n');
        for d in config.smtp.domains.iter().filter(|d| d.name.eq_ignore_ascii_case(&s.name)) {
            out.push_str(&format!(
                "# source: configuration file, replaced by the database's entry for {} (not in effect):\n",
                s.name
            ));
            out.push_str(&commented(&entry_toml(&["smtp", "domains"], domain_entry(d)?)?));
        }
        let replaces = config.smtp.domains.iter().any(|d| d.name.eq_ignore_ascii_case(&s.name));
        out.push_str(&format!(
            "# source: database{}\n",
            if replaces { ", replaces the configuration file's entry of the same name" } else { "" }
        ));
        out.push_str(&entry_toml(&["smtp", "domains"], domain_entry(s)?)?);
    }

    // The organisation-wide ASF modes stored over the file's `[asf]` (`mailsift asf set`, the console): as
    // comments, since the database keeps providing them (a second `[asf]` table would not read back).
    if let Some(db) = mailsift_store::Database::open_existing(data_dir, &config.store).ok().flatten() {
        let org = mailsift_gateway::config::OrganisationSettings::parse(db.organisation_settings()?.as_deref())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if !org.asf.is_empty() {
            out.push_str(
                "
# source: database (`mailsift asf set`); in effect over the [asf] values above:
",
            );
            for (option, mode) in &org.asf {
                let mode = toml::Value::try_from(mode).context("an ASF mode")?;
                out.push_str(&format!("# asf.{option} = {mode}\n"));
            }
        }
    }

    // Policy: the file's entries, then the database's, in evaluation order.
    for (source, policy) in [("configuration file", &config.engine.policy), ("database", &stored_policy)] {
        let kinds: [(&str, Vec<toml::Table>); 3] = [
            ("rules", policy.rules.iter().map(|r| to_table("a policy rule", r)).collect::<Result<_>>()?),
            ("allow", policy.allow.iter().map(|r| to_table("an allowed sender", r)).collect::<Result<_>>()?),
            ("block", policy.block.iter().map(|r| to_table("a blocked sender", r)).collect::<Result<_>>()?),
        ];
        for (kind, entries) in kinds {
            for e in entries {
                out.push_str(&format!("\n# source: {source}\n"));
                out.push_str(&entry_toml(&["policy", kind], e)?);
            }
        }
    }
    Ok(out)
}

/// `mailsift config dump`.
pub fn dump(at: &crate::datadir::Location, non_default: bool) -> Result<()> {
    let config = load(at.config.as_deref())?;
    let text = dump_text(&config, &at.data_dir, &at.describe_data_dir(), non_default)?;
    use std::io::Write;
    std::io::stdout().write_all(text.as_bytes()).context("cannot write the dump")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named_by_their_full_path() {
        let text = "[smtp]\nlisten = [\"127.0.0.1:2525\"]\nbogus = 1\n\n[smtp.tls]\nenabled = false\nkee = \"x\"\n\n\
                    [frobnicate]\nx = 1\n\n[web]\ndigest = { enabled = true, intervl = 2 }\n";
        let paths: Vec<(String, Option<usize>)> =
            unknown_keys(text).into_iter().map(|u| (u.path.join("."), u.line)).collect();
        assert_eq!(
            paths,
            vec![
                ("frobnicate".to_string(), Some(9)),
                ("smtp.bogus".to_string(), Some(3)),
                ("smtp.tls.kee".to_string(), Some(7)),
                ("web.digest.intervl".to_string(), Some(13)),
            ]
        );
        let e = Config::from_toml(text).unwrap_err().to_string();
        for name in ["`frobnicate` (line 9)", "`smtp.bogus` (line 3)", "`smtp.tls.kee` (line 7)", "web.digest.intervl"]
        {
            assert!(e.contains(name), "{name}: {e}");
        }
        // Keys in an array of tables and dotted keys.
        // A key of the same name elsewhere is not taken for it.
        let text = "[smtp]\nbogus = 1\n[web]\ndigest = { bogus = 2 }\n";
        let found: Vec<(String, Option<usize>)> =
            unknown_keys(text).into_iter().map(|u| (u.path.join("."), u.line)).collect();
        assert_eq!(found, vec![("smtp.bogus".to_string(), Some(2)), ("web.digest.bogus".to_string(), Some(4))]);
        let text = "[[smtp.domains]]\nname = \"a.test\"\nnext_hopp = \"x:25\"\n\n[dns]\nenabled = false\nsmtp.x = 1\n";
        let paths: Vec<String> = unknown_keys(text).into_iter().map(|u| u.path.join(".")).collect();
        assert_eq!(paths, vec!["dns.smtp".to_string(), "smtp.domains.next_hopp".to_string()]);
        assert!(unknown_keys("").is_empty());
        assert!(unknown_keys("[smtp]\nhostname = \"mx.test\"\n").is_empty());
    }

    #[test]
    fn a_database_password_never_shows_in_the_dump() {
        for (url, shown) in [
            ("postgresql://gw:s3cret@db.example:5432/mail", "postgresql://gw:<hidden>@db.example:5432/mail"),
            ("postgresql://gw@db.example/mail", "postgresql://gw@db.example/mail"),
            (
                "postgresql://db.example/mail?password=s3cret&sslmode=require",
                "postgresql://db.example/mail?password=<hidden>&sslmode=require",
            ),
            ("host=db.example password=s3cret dbname=mail", "host=db.example password=<hidden> dbname=mail"),
            ("password=a&x=1&password=b", "password=<hidden>&x=1&password=<hidden>"),
        ] {
            assert_eq!(hide_url_password(url), shown);
        }
        let config =
            Config::from_toml("[store]\nbackend = \"postgres\"\nurl = \"postgresql://gw:s3cret@db.example/mail\"\n")
                .unwrap();
        let tree = toml::to_string(&main_tree(&config).unwrap()).unwrap();
        assert!(!tree.contains("s3cret") && tree.contains("backend = \"postgres\""), "{tree}");
    }

    #[test]
    fn secrets_are_hidden_by_key_and_by_value() {
        let mut v: toml::Value = toml::from_str(
            "password = \"p\"\napi_key = \"k\"\nmax_tokens = 5\ntoken_secret = \"s\"\nhash = \"$argon2id$v=19$x\"\n\
             pem = \"-----BEGIN PRIVATE KEY-----\\nabc\"\nname = \"kept\"\n[[users]]\nname = \"u\"\npassword = \"q\"\n",
        )
        .unwrap();
        hide_secrets(&mut v);
        let text = toml::to_string(&v).unwrap();
        for secret in ["\"p\"", "\"k\"", "\"s\"", "argon2", "BEGIN", "\"q\""] {
            assert!(!text.contains(secret), "{secret}: {text}");
        }
        assert!(text.contains("max_tokens = 5") && text.contains("name = \"kept\""), "{text}");
    }

    #[test]
    fn differences_keep_only_what_changed() {
        let a: toml::Table = toml::from_str("x = 1\ny = 2\n[t]\na = 1\nb = [1]\n[u]\nc = 1\n").unwrap();
        let b: toml::Table = toml::from_str("x = 1\ny = 3\n[t]\na = 1\nb = []\n[u]\nc = 1\n").unwrap();
        let d = differences(&a, &b);
        assert_eq!(toml::to_string(&d).unwrap(), "y = 2\n\n[t]\nb = [1]\n");
    }
}
