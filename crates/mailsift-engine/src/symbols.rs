//! The symbol registry: every named piece of evidence a check can report.
//!
//! A symbol has a name, a group, a default weight, a one-line description for users and a remedy for
//! administrators. Check modules declare their symbols as static tables next to the code that emits them;
//! the registry gathers those tables once at start, applies the weight overrides from configuration and
//! adds the administrator's own rules. The registry is the documentation (`mailsift symbols`) and the
//! knowledge the explanation uses.

use std::fmt;

use rustc_hash::FxHashMap;
use serde::Serialize;

/// The most a classifier symbol's weight can be scaled by: the ceiling of an installation's fitted
/// combination of the engines (`classify::combine`).
pub const CLASSIFIER_FACTOR_MAX: f64 = 3.0;

/// The name of a built-in symbol, typed. Every check module declares its symbols as `Sym` constants
/// beside its `SymbolSpec` table (with [`syms!`]) and emits them through [`Hits::hit`], so a misspelt
/// name does not compile; the string name is what leaves the process (configuration, stored rows,
/// headers, the API) and stays exactly as it was. All of them are reachable as [`crate::catalogue::sym`]`::NAME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sym(&'static str);

impl Sym {
    /// Only [`syms!`] makes one, so every constant is listed in its module's `ALL`.
    pub(crate) const fn new(name: &'static str) -> Sym {
        Sym(name)
    }

    pub const fn name(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for Sym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl AsRef<str> for Sym {
    fn as_ref(&self) -> &str {
        self.0
    }
}

impl PartialEq<str> for Sym {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<Sym> for str {
    fn eq(&self, other: &Sym) -> bool {
        self == other.0
    }
}

impl PartialEq<Sym> for String {
    fn eq(&self, other: &Sym) -> bool {
        self.as_str() == other.0
    }
}

impl PartialEq<Sym> for &str {
    fn eq(&self, other: &Sym) -> bool {
        *self == other.0
    }
}

/// Declares a module's symbols: one `Sym` constant per name, and `ALL`, the list the registry test
/// holds against the module's `SymbolSpec` table (every constant registered once, every spec a constant).
macro_rules! syms {
    ($($name:ident),* $(,)?) => {
        $(pub const $name: $crate::symbols::Sym = $crate::symbols::Sym::new(stringify!($name));)*
        /// Every symbol constant of this module.
        pub const ALL: &[$crate::symbols::Sym] = &[$($name),*];
    };
}
pub(crate) use syms;

/// Whose side a symbol is on: who can change what made it fire. The diagnosis sorts a verdict's
/// evidence by it (the sender's administrator, our own configuration, our policy, the content).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The sending server's own practices: its reverse DNS, its greeting, its reputation and listings.
    SenderPractice,
    /// Authentication of the sender (SPF, DKIM, DMARC, ARC): the sending domain's owner's to fix, which
    /// is us when the domain is one of ours (see [`FixKind::about`]).
    SenderAuth,
    /// Our own domains' configuration: our domain sent from a server we do not list, a server we list
    /// that our DNS does not.
    OwnConfiguration,
    /// The message itself: content heuristics and the classifiers.
    Content,
    /// An Additional Spam Filtering option that we turned on.
    AsfOption,
    /// Our own policy: filter rules and sender lists.
    Policy,
    /// Pipeline tests such as GTUBE: nobody's.
    Test,
}

impl Side {
    /// The side of a group's symbols unless the table says otherwise; symbols that configuration
    /// defines (rules, DNS lists, composites) always take their group's.
    pub const fn of_group(g: Group) -> Side {
        match g {
            Group::Connection | Group::Reputation => Side::SenderPractice,
            Group::Auth => Side::SenderAuth,
            Group::Asf => Side::AsfOption,
            Group::Policy => Side::Policy,
            Group::Test => Side::Test,
            Group::Headers
            | Group::Content
            | Group::Obfuscation
            | Group::Urls
            | Group::Html
            | Group::Attachments
            | Group::Classifier => Side::Content,
        }
    }

    /// Whether the evidence is about the sender (its server, its authentication, or our own domain's
    /// configuration for it) rather than the content or our policy.
    pub const fn is_senders(self) -> bool {
        matches!(self, Side::SenderPractice | Side::SenderAuth | Side::OwnConfiguration)
    }
}

/// The domain a fix is made in, when the symbol is about a domain's DNS or signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum About {
    /// The envelope sender's domain (SPF).
    EnvelopeDomain,
    /// The From: domain (DMARC).
    FromDomain,
    /// The signer the detail names (DKIM); unknown without the detail.
    Signer,
}

/// The fix a symbol implies, as the diagnosis words it. `Describe` falls back to the symbol's own
/// description; the others name the change and who makes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FixKind {
    /// Nothing specific: the description says what is wrong.
    Describe,
    /// The sending server needs a PTR record.
    PublishPtr,
    /// The PTR name must resolve back to the address.
    ConfirmPtr,
    /// Mail should leave through a server with a static address and its own name.
    StaticServer,
    /// The server must greet with its full host name.
    HeloFullName,
    /// The server greets with a bare IP address instead of its name.
    HeloNotBareIp,
    /// The greeting should be in the domain of the PTR name.
    HeloInPtrDomain,
    /// The address literal of the greeting must be the connecting address.
    HeloLiteralMatch,
    /// The SPF record must list the server (hard fail).
    SpfListServer,
    /// The SPF record should list the server (soft fail).
    SpfListServerSoft,
    /// The SPF record is broken and must be repaired.
    SpfRepair,
    /// The domain should publish an SPF record.
    SpfPublish,
    /// The signature must be made after the footer is added.
    DkimSignAfterChanges,
    /// The signing key or selector must be checked.
    DkimCheckKey,
    /// The key the signature names must be published.
    DkimPublishKey,
    /// The signature has expired.
    DkimRenew,
    /// The From: domain's owner must authorise the server or sign with the domain (DMARC).
    DmarcAlign,
    /// Our own DNS (SPF) must list our sending server, or the service must sign with our domain.
    OwnDns,
    /// The ARC sealers of the chain must be trusted (`organisation.trusted_arc_sealers`).
    TrustArcSealers,
    /// An Additional Spam Filtering option to set (`asf.*`), or a rule for the sender.
    AsfOption,
    /// One of our filter rules: change, move or disable it.
    EditRule,
    /// A blocked-senders entry: remove it.
    RemoveBlock,
    /// An allowed-senders entry decided.
    AllowEntry,
    /// Teach the classifiers by reporting the message.
    Report,
}

impl FixKind {
    /// The fix of a group's symbols unless the table says otherwise.
    pub const fn of_group(g: Group) -> FixKind {
        match Side::of_group(g) {
            Side::Content => FixKind::Report,
            Side::AsfOption => FixKind::AsfOption,
            _ => FixKind::Describe,
        }
    }

    /// The domain whose DNS or signing the fix changes, for the fixes that are ours to make when that
    /// domain is one of ours (our SPF, our DMARC, our signature).
    pub const fn about(self) -> Option<About> {
        match self {
            FixKind::SpfListServer | FixKind::SpfListServerSoft => Some(About::EnvelopeDomain),
            FixKind::DmarcAlign => Some(About::FromDomain),
            FixKind::DkimSignAfterChanges => Some(About::Signer),
            _ => None,
        }
    }
}

/// What the diagnosis needs of a symbol: whose side it is on, and the fix it implies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Role {
    pub side: Side,
    pub fix: FixKind,
}

impl Role {
    pub const fn of_group(g: Group) -> Role {
        Role { side: Side::of_group(g), fix: FixKind::of_group(g) }
    }
}

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
    /// Whose side the symbol is on and the fix it implies (the group's unless the table says otherwise).
    pub role: Role,
}

impl SymbolSpec {
    /// A spec by name, for tables whose names have no [`Sym`] constant; built-in checks use [`SymbolSpec::of`].
    pub const fn new(
        name: &'static str,
        group: Group,
        weight: f64,
        description: &'static str,
        remedy: &'static str,
    ) -> Self {
        SymbolSpec { name, group, weight, description, remedy, asf: None, role: Role::of_group(group) }
    }

    /// The spec of a typed symbol.
    pub const fn of(sym: Sym, group: Group, weight: f64, description: &'static str, remedy: &'static str) -> Self {
        SymbolSpec::new(sym.name(), group, weight, description, remedy)
    }

    /// Declares whose side the symbol is on, when not its group's.
    pub const fn side(mut self, side: Side) -> Self {
        self.role.side = side;
        self
    }

    /// Declares the fix the symbol implies, when not its group's.
    pub const fn fix(mut self, fix: FixKind) -> Self {
        self.role.fix = fix;
        self
    }
}

/// The parse's own symbols (see [`PARSE_SYMBOLS`]).
pub mod parse_sym {
    crate::symbols::syms![MIME_LIMIT_EXCEEDED];
}

/// Symbols about the parse itself rather than a check's finding, emitted by `message::limits::report`.
pub const PARSE_SYMBOLS: &[SymbolSpec] = &[SymbolSpec::of(
    parse_sym::MIME_LIMIT_EXCEEDED,
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
    /// Beside `defs`, by id: what the diagnosis reads of each symbol.
    roles: Vec<Role>,
    by_name: FxHashMap<String, SymbolId>,
}

impl Registry {
    /// Adds a symbol with its group's [`Role`] (symbols defined by configuration: rules, DNS lists,
    /// composites).
    pub fn add(&mut self, def: SymbolDef) -> Result<SymbolId, String> {
        let role = Role::of_group(def.group);
        self.add_with_role(def, role)
    }

    fn add_with_role(&mut self, def: SymbolDef, role: Role) -> Result<SymbolId, String> {
        if self.by_name.contains_key(&def.name) {
            return Err(format!("symbol {} is defined twice", def.name));
        }
        let id = self.defs.len() as SymbolId;
        self.by_name.insert(def.name.clone(), id);
        self.defs.push(def);
        self.roles.push(role);
        Ok(id)
    }

    pub fn add_specs(&mut self, specs: &[SymbolSpec]) -> Result<(), String> {
        for s in specs {
            self.add_with_role(
                SymbolDef {
                    name: s.name.to_string(),
                    group: s.group,
                    weight: s.weight,
                    default_weight: s.weight,
                    description: s.description.to_string(),
                    remedy: s.remedy.to_string(),
                    asf: s.asf,
                },
                s.role,
            )?;
        }
        Ok(())
    }

    /// Whose side a symbol is on and the fix it implies.
    pub fn role(&self, id: SymbolId) -> Role {
        self.roles[id as usize]
    }

    /// The [`Role`] of a symbol by name (as the verdict, our headers or the log name it); None for a
    /// name the registry does not know (a symbol since removed, a rule since deleted).
    pub fn role_of(&self, name: &str) -> Option<Role> {
        self.id(name).map(|id| self.role(id))
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
    /// The share of the symbol's weight it scores, in [0, 1]: 1 for a rule that fires, less for evidence
    /// that comes in degrees (a classifier's confidence within its grade).
    pub factor: f64,
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

    /// Records a built-in symbol with a detail. Every [`Sym`] is in a table the engine registers (the
    /// registry test holds the constants against the tables), so the lookup cannot miss.
    pub fn hit(&mut self, sym: Sym, detail: impl Into<String>) {
        self.hit_scaled(sym, 1.0, detail);
    }

    /// Records a built-in symbol that scores `factor` (clamped to [0, 1]) of its weight. A symbol hit
    /// again keeps the strongest factor it was hit with (and gathers the details, as [`Hits::hit_id`] does).
    pub fn hit_scaled(&mut self, sym: Sym, factor: f64, detail: impl Into<String>) {
        self.hit_scaled_up_to(sym, factor, 1.0, detail);
    }

    /// As [`Hits::hit_scaled`], the factor clamped to [0, `most`]: for the classifiers, whose points an
    /// installation's fitted combination may scale up to [`CLASSIFIER_FACTOR_MAX`] times.
    pub fn hit_scaled_up_to(&mut self, sym: Sym, factor: f64, most: f64, detail: impl Into<String>) {
        let Some(id) = self.registry.id(sym.name()) else {
            debug_assert!(false, "symbol {sym} is not registered");
            return;
        };
        let factor = if factor.is_finite() { factor.clamp(0.0, most) } else { 0.0 };
        let again = self.hits.iter().any(|h| h.id == id);
        self.hit_id(id, detail.into());
        if let Some(h) = self.hits.iter_mut().find(|h| h.id == id) {
            h.factor = if again { h.factor.max(factor) } else { factor };
        }
    }

    /// Records a symbol whose name configuration defines (a DNS list's): unknown names are ignored, since
    /// the evidence may name a list the configuration no longer has. Returns whether it was recorded.
    pub fn hit_named(&mut self, name: &str, detail: impl Into<String>) -> bool {
        match self.registry.id(name) {
            Some(id) => {
                self.hit_id(id, detail.into());
                true
            }
            None => false,
        }
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
        self.hits.push(Hit { id, detail, factor: 1.0 });
    }

    /// The configured weight of a built-in symbol (0 for one not registered).
    pub fn weight(&self, sym: Sym) -> f64 {
        self.registry.id(sym.name()).map_or(0.0, |id| self.registry.get(id).weight)
    }

    pub fn has(&self, sym: Sym) -> bool {
        match self.registry.id(sym.name()) {
            Some(id) => self.hits.iter().any(|h| h.id == id),
            None => false,
        }
    }

    /// The points of the hits so far outside `group`, at their configured weights (before any group cap).
    pub fn points_outside(&self, group: Group) -> f64 {
        self.hits
            .iter()
            .map(|h| (self.registry.get(h.id), h.factor))
            .filter(|(d, _)| d.group != group)
            .map(|(d, f)| d.weight * f)
            .sum()
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
