//! The symbol registry: every named piece of evidence a check can report.
//!
//! A symbol has a name, a group, a default weight, a one-line description for users and a remedy for
//! administrators. Check modules declare their symbols as static tables next to the code that emits them;
//! the registry gathers those tables once at start, applies the weight overrides from configuration and
//! adds the administrator's own rules. The registry is the documentation (`mailsift symbols`) and the
//! knowledge the explanation uses.

use rustc_hash::FxHashMap;
use serde::Serialize;

/// The family a symbol belongs to; the explanation groups by it and groups can be capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Group {
    Connection,
    Auth,
    Reputation,
    Headers,
    Content,
    Obfuscation,
    Urls,
    Html,
    Attachments,
    Classifier,
    Asf,
    Policy,
    /// Pipeline tests such as GTUBE: never capped, never learned from.
    Test,
}

impl Group {
    pub fn as_str(self) -> &'static str {
        match self {
            Group::Connection => "connection",
            Group::Auth => "auth",
            Group::Reputation => "reputation",
            Group::Headers => "headers",
            Group::Content => "content",
            Group::Obfuscation => "obfuscation",
            Group::Urls => "urls",
            Group::Html => "html",
            Group::Attachments => "attachments",
            Group::Classifier => "classifier",
            Group::Asf => "asf",
            Group::Policy => "policy",
            Group::Test => "test",
        }
    }

    /// The engine that produces the group, for `X-Mailsift-Scanned` and the explanation's headings.
    pub fn engine(self) -> &'static str {
        match self {
            Group::Connection | Group::Reputation => "sender",
            Group::Auth => "auth",
            Group::Classifier => "classifier",
            Group::Asf => "asf",
            Group::Policy => "policy",
            _ => "heuristics",
        }
    }
}

/// What an Additional Spam Filtering option does when it is On: raise the score by its weight, or mark the
/// message high-confidence spam (SCL 9, at least quarantined) as Microsoft's filtering service did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AsfEffect {
    IncreaseScore,
    HighConfidenceSpam,
}

/// A symbol as a check module declares it.
#[derive(Debug, Clone, Copy)]
pub struct SymbolSpec {
    pub name: &'static str,
    pub group: Group,
    pub weight: f64,
    pub description: &'static str,
    pub remedy: &'static str,
    /// Set for the symbols of ASF options: how the option acts when On.
    pub asf: Option<AsfEffect>,
}

impl SymbolSpec {
    pub const fn new(
        name: &'static str,
        group: Group,
        weight: f64,
        description: &'static str,
        remedy: &'static str,
    ) -> Self {
        SymbolSpec { name, group, weight, description, remedy, asf: None }
    }
}

/// Symbols about the parse itself rather than a check's finding, emitted by `message::limits::report`.
pub const PARSE_SYMBOLS: &[SymbolSpec] = &[SymbolSpec::new(
    "MIME_LIMIT_EXCEEDED",
    Group::Content,
    1.0,
    "The MIME structure went past a parse limit (nesting depth, number of parts, header fields or decoded \
     size); the message was judged on the part before the limit. Legitimate mail never comes near these limits.",
    "Nothing to configure: the limits stop messages built to exhaust the parser. If a genuine message is affected, \
     allow its sender and report the case to the mailsift developers with the message.",
)];

/// A symbol as the registry holds it, with the configured weight.
#[derive(Debug, Clone, Serialize)]
pub struct SymbolDef {
    pub name: String,
    pub group: Group,
    pub weight: f64,
    pub default_weight: f64,
    pub description: String,
    pub remedy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asf: Option<AsfEffect>,
}

/// Index of a symbol in the registry.
pub type SymbolId = u32;

#[derive(Debug, Clone, Default)]
pub struct Registry {
    defs: Vec<SymbolDef>,
    by_name: FxHashMap<String, SymbolId>,
}

impl Registry {
    pub fn add(&mut self, def: SymbolDef) -> Result<SymbolId, String> {
        if self.by_name.contains_key(&def.name) {
            return Err(format!("symbol {} is defined twice", def.name));
        }
        let id = self.defs.len() as SymbolId;
        self.by_name.insert(def.name.clone(), id);
        self.defs.push(def);
        Ok(id)
    }

    pub fn add_specs(&mut self, specs: &[SymbolSpec]) -> Result<(), String> {
        for s in specs {
            self.add(SymbolDef {
                name: s.name.to_string(),
                group: s.group,
                weight: s.weight,
                default_weight: s.weight,
                description: s.description.to_string(),
                remedy: s.remedy.to_string(),
                asf: s.asf,
            })?;
        }
        Ok(())
    }

    pub fn id(&self, name: &str) -> Option<SymbolId> {
        self.by_name.get(name).copied()
    }

    pub fn get(&self, id: SymbolId) -> &SymbolDef {
        &self.defs[id as usize]
    }

    pub fn by_name(&self, name: &str) -> Option<&SymbolDef> {
        self.id(name).map(|id| self.get(id))
    }

    pub fn set_weight(&mut self, name: &str, weight: f64) -> bool {
        match self.id(name) {
            Some(id) => {
                self.defs[id as usize].weight = weight;
                true
            }
            None => false,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &SymbolDef> {
        self.defs.iter()
    }

    pub fn len(&self) -> usize {
        self.defs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.defs.is_empty()
    }
}

/// One symbol that fired, with the detail that makes it explain itself (the IP, the domain, the word).
#[derive(Debug, Clone)]
pub struct Hit {
    pub id: SymbolId,
    pub detail: String,
}

/// Collects hits during a scan; a symbol fires at most once, later details are appended (bounded).
pub struct Hits<'r> {
    registry: &'r Registry,
    hits: Vec<Hit>,
}

const MAX_DETAIL: usize = 160;

impl<'r> Hits<'r> {
    pub fn new(registry: &'r Registry) -> Self {
        Hits { registry, hits: Vec::with_capacity(16) }
    }

    /// Records `name` with a detail. Emitting a name that is not registered is a bug in the check; it is
    /// caught by the registry test in debug builds and ignored in release so a scan never fails for it.
    pub fn hit(&mut self, name: &str, detail: impl Into<String>) {
        let Some(id) = self.registry.id(name) else {
            debug_assert!(false, "symbol {name} is not registered");
            return;
        };
        self.hit_id(id, detail.into());
    }

    pub fn hit_id(&mut self, id: SymbolId, detail: String) {
        if let Some(h) = self.hits.iter_mut().find(|h| h.id == id) {
            if h.detail.len() < MAX_DETAIL && !detail.is_empty() && !h.detail.contains(detail.as_str()) {
                if !h.detail.is_empty() {
                    h.detail.push_str(", ");
                }
                h.detail.push_str(&detail);
                truncate_at_char(&mut h.detail, MAX_DETAIL);
            }
            return;
        }
        let mut detail = detail;
        truncate_at_char(&mut detail, MAX_DETAIL);
        self.hits.push(Hit { id, detail });
    }

    pub fn has(&self, name: &str) -> bool {
        match self.registry.id(name) {
            Some(id) => self.hits.iter().any(|h| h.id == id),
            None => false,
        }
    }

    pub fn into_vec(self) -> Vec<Hit> {
        self.hits
    }

    pub fn as_slice(&self) -> &[Hit] {
        &self.hits
    }
}

pub(crate) fn truncate_at_char(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
}
