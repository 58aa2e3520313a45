//! Composites: known patterns of symbols that together mean something else than their sum.
//!
//! A composite is an expression over symbols and groups (`(SPF_FAIL | SPF_SOFTFAIL) & -DMARC_PASS`). It is
//! evaluated after every check has run and before the thresholds, on the symbols the checks found. When it
//! holds, its own symbol joins the verdict (with its own score and a detail naming what it changed), and the
//! symbols it matched lose their weight, leave the verdict, keep part of it, or stay as they are (its
//! policy, or an atom's own prefix). This is how a known false-positive pattern such as forwarded mail is
//! answered without touching the checks that found each piece, and every verdict stays explained.
//!
//! Semantics:
//! - all composites are evaluated on the checks' symbols as found, so their order does not matter and one
//!   composite never sees another's changes;
//! - an atom matches when it is not under a `!` and its symbol (or, for `group:<name>`, any symbol of the
//!   group) is present; only matched atoms' symbols are changed;
//! - when several composites change one symbol, the strongest change wins: removing the symbol, then
//!   removing its weight, then keeping the smallest share of it, then leaving it;
//! - a composite's atoms name the checks' symbols, never another composite.
//!
//! The expressions are written by the administrator, but are parsed with bounded size and nesting and
//! without recursion all the same (shunting-yard to postfix, evaluated on a stack).

use crate::config::{CompositeConfig, CompositePolicy};
use crate::symbols::{Group, Registry, SymbolDef, SymbolSpec};
use crate::verdict::SymbolResult;

/// Longest expression accepted, in bytes.
pub const MAX_EXPRESSION_BYTES: usize = 2048;
/// Most atoms (symbols and groups) in one expression.
pub const MAX_ATOMS: usize = 64;
/// Deepest nesting of parentheses in one expression.
pub const MAX_DEPTH: usize = 16;
/// Most composites in one configuration (built-in ones included).
pub const MAX_COMPOSITES: usize = 512;

/// Facts the composites need that no check reports on its own. Weight 0: they explain, never score.
pub const FACT_SYMBOLS: &[SymbolSpec] = &[
    SymbolSpec::new(
        "MAILING_LIST_SIGNED",
        Group::Auth,
        0.0,
        "The message came through a mailing list (List-Id) and carries a valid DKIM signature of the list's own \
         domain: the list took responsibility for what it sent on.",
        "Nothing to fix: this is a fact the mailing-list composites use (a list that adds a footer or a subject \
         tag breaks the author's signature and DMARC, and its own signature says who did it).",
    ),
    SymbolSpec::new(
        "BULK_ONE_CLICK_SIGNED",
        Group::Auth,
        0.0,
        "Bulk mail done right: a one-click unsubscribe over HTTPS (RFC 8058: List-Unsubscribe and \
         List-Unsubscribe-Post), both headers covered by a valid DKIM signature of the From: domain, sent with \
         an envelope sender in the same domain.",
        "Nothing to fix: this is a fact the KNOWN_BULK_SENDER composite uses.",
    ),
];

/// The built-in composites, for the false-positive patterns every site meets. On by default; a
/// `[[composites]]` entry of the same name replaces one, or with `enabled = false` switches it off.
pub struct Builtin {
    pub name: &'static str,
    pub expression: &'static str,
    pub score: f64,
    pub policy: CompositePolicy,
    pub factor: Option<f64>,
    pub description: &'static str,
    pub remedy: &'static str,
}

pub const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "KNOWN_BULK_SENDER",
        // A newsletter is legitimate bulk mail when its sender stands behind it (its own signature over a
        // working one-click unsubscribe, DMARC passing for the From: domain) and we have had good mail from
        // that domain before. Each part keeps a forger out: he cannot sign for the domain, pass its DMARC,
        // nor borrow its history (BULK_ONE_CLICK_SIGNED asks the envelope sender to be in the From: domain,
        // so the domain reputation is the From: domain's). A phish sent from a real account of a good
        // domain is not rescued: the phishing and impersonation symbols, our own domain spoofed, or an
        // attachment switch the composite off. It only adds points toward ham, never removes evidence.
        expression: "BULK_ONE_CLICK_SIGNED & DMARC_PASS & REPUTATION_DOMAIN_GOOD & !SPOOF_OWN_DOMAIN & \
                     !PHISHING_LINK_MISMATCH & !URL_USERINFO_TRICK & !PHRASE_PHISHING & \
                     !FROM_NAME_IMPERSONATES_BRAND & !FROM_DISPLAY_ADDR_MISMATCH & !group:attachments",
        score: -3.0,
        policy: CompositePolicy::Leave,
        factor: None,
        description: "A newsletter from a domain that has sent us good mail before, signed by that domain over a \
                      one-click unsubscribe, with DMARC passing: legitimate bulk mail, 3 points toward ham.",
        remedy: "Nothing to fix. If such a sender's mail is unwanted, users can unsubscribe, or block the sender; \
                 to switch the composite off: [[composites]] name = \"KNOWN_BULK_SENDER\" enabled = false.",
    },
    Builtin {
        name: "FORWARDED_AUTHOR_SIGNED",
        // DMARC passing while SPF fails can only come from the From: domain's own aligned DKIM signature:
        // the author vouches for this very message, and the SPF failure is the forwarder's address, which
        // the author's SPF record cannot list. A forger cannot make DMARC pass for a domain he does not
        // hold, and for his own domain he could as well have passed SPF.
        expression: "(SPF_FAIL | SPF_SOFTFAIL | ASF_SPF_HARD_FAIL) & -DMARC_PASS",
        score: 0.0,
        policy: CompositePolicy::RemoveWeight,
        factor: None,
        description: "SPF failed, but the From: domain's own signature verified and DMARC passed: the message \
                      was forwarded (the forwarder's server is not in the author's SPF record), so the SPF \
                      failure does not count.",
        remedy: "Nothing to fix. To count SPF failures of forwarded mail again, switch the composite off: \
                 [[composites]] name = \"FORWARDED_AUTHOR_SIGNED\" enabled = false.",
    },
    Builtin {
        name: "MAILING_LIST_BROKEN_SIGNATURE",
        // A list that adds a footer or tags the subject breaks the author's signature (body hash, or the
        // signed Subject), and signs what it sent on with its own domain. Not counting the broken signature
        // puts the message where an unsigned one would be, never better.
        // Never for our own protected domains: anyone can run a "list" that signs with his own domain, and
        // our own mail through a list or a signature service is recognised by ARC_OWN_DOMAIN (trusted
        // sealers) or the domain's trusted relays, not by a List-Id the sender writes.
        expression: "-MAILING_LIST_SIGNED & (DKIM_BODY_MODIFIED | DKIM_INVALID) & !SPOOF_OWN_DOMAIN",
        score: 0.0,
        policy: CompositePolicy::RemoveWeight,
        factor: None,
        description: "A signature broke on the way through a mailing list that signed the message with its own \
                      domain (lists add footers and subject tags): the broken signature does not count.",
        remedy: "Nothing to fix. To count such broken signatures again, switch the composite off: \
                 [[composites]] name = \"MAILING_LIST_BROKEN_SIGNATURE\" enabled = false.",
    },
    Builtin {
        name: "MAILING_LIST_DMARC",
        // DMARC fails for list mail that keeps the author's From: (the list is not the author's domain, and
        // its footer or subject tag broke the author's signature). Only halved: anyone with a domain of his
        // own can run a "list" that signs, so the From: domain's DMARC failure still counts for something.
        expression: "-MAILING_LIST_SIGNED & (-DKIM_BODY_MODIFIED | -DKIM_INVALID) & \
                     (DMARC_POLICY_REJECT | DMARC_POLICY_QUARANTINE | DMARC_POLICY_NONE) & !SPOOF_OWN_DOMAIN",
        score: 0.0,
        policy: CompositePolicy::ScaleWeight,
        factor: Some(0.5),
        description: "DMARC failed for a message a mailing list sent on, signed with its own domain, after \
                      changing what the author signed: the DMARC failure counts half.",
        remedy: "Nothing to fix; ask the list to rewrite From: (DMARC mitigation) if its mail keeps failing. To \
                 count the failure in full, switch the composite off: [[composites]] name = \
                 \"MAILING_LIST_DMARC\" enabled = false.",
    },
];

/// How one matched atom's symbols change.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Effect {
    Leave,
    Scale(f64),
    RemoveWeight,
    RemoveSymbol,
}

impl Effect {
    /// Larger is stronger; when composites disagree on a symbol the strongest wins.
    fn strength(self) -> (u8, f64) {
        match self {
            Effect::Leave => (0, 0.0),
            Effect::Scale(f) => (1, 1.0 - f),
            Effect::RemoveWeight => (2, 0.0),
            Effect::RemoveSymbol => (3, 0.0),
        }
    }

    fn stronger_than(self, other: Effect) -> bool {
        let (a, b) = (self.strength(), other.strength());
        a.0 > b.0 || (a.0 == b.0 && a.1 > b.1)
    }
}

#[derive(Debug, Clone)]
enum AtomKind {
    Symbol(String),
    Group(Group),
}

#[derive(Debug, Clone)]
struct Atom {
    kind: AtomKind,
    /// The atom's own prefix, overriding the composite's policy.
    effect: Option<Effect>,
    /// Under an odd number of `!`: its presence never counts as a match.
    negated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Atom(usize),
    Not,
    And,
    Or,
}

/// An expression parsed, not yet resolved against a registry: atoms as written, and the postfix program.
#[derive(Debug, Clone)]
pub struct Parsed {
    atoms: Vec<(String, Option<char>, bool)>,
    program: Vec<Op>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok {
    Not,
    And,
    Or,
    Open,
    Close,
}

/// Parses an expression; the error says what was expected where (byte offset).
pub fn parse(expr: &str) -> Result<Parsed, String> {
    if expr.len() > MAX_EXPRESSION_BYTES {
        return Err(format!("longer than {MAX_EXPRESSION_BYTES} bytes"));
    }
    let bytes = expr.as_bytes();
    let mut atoms: Vec<(String, Option<char>, bool)> = Vec::new();
    let mut program = Vec::new();
    let mut ops: Vec<Tok> = Vec::new();
    // Negation bookkeeping: `parity` is whether the current position is under an odd number of `!`;
    // `pending` a `!` waiting for its operand; `opened` what each open parenthesis added to the parity.
    let (mut parity, mut pending) = (false, false);
    let mut opened: Vec<bool> = Vec::new();
    let mut expect_operand = true;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let at = i;
        if expect_operand {
            match c {
                b'!' => {
                    ops.push(Tok::Not);
                    pending = !pending;
                    i += 1;
                }
                b'(' => {
                    if opened.len() >= MAX_DEPTH {
                        return Err(format!("parentheses nested deeper than {MAX_DEPTH} (byte {at})"));
                    }
                    opened.push(pending);
                    parity ^= pending;
                    pending = false;
                    ops.push(Tok::Open);
                    i += 1;
                }
                _ => {
                    let prefix = match c {
                        b'~' | b'^' | b'-' | b'*' => {
                            i += 1;
                            Some(c as char)
                        }
                        _ => None,
                    };
                    let start = i;
                    while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b':')) {
                        i += 1;
                    }
                    if start == i {
                        let what = if prefix.is_some() { "a symbol after the prefix" } else { "a symbol, `!` or `(`" };
                        return Err(format!("expected {what} at byte {i}"));
                    }
                    if atoms.len() >= MAX_ATOMS {
                        return Err(format!("more than {MAX_ATOMS} symbols and groups"));
                    }
                    program.push(Op::Atom(atoms.len()));
                    atoms.push((expr[start..i].to_string(), prefix, parity ^ pending));
                    pending = false;
                    expect_operand = false;
                }
            }
        } else {
            let tok = match c {
                b'&' => Tok::And,
                b'|' => Tok::Or,
                b')' => Tok::Close,
                _ => return Err(format!("expected `&`, `|` or `)` at byte {at}")),
            };
            i += 1;
            if tok == Tok::Close {
                loop {
                    match ops.pop() {
                        Some(Tok::Open) => break,
                        Some(t) => program.push(to_op(t)),
                        None => return Err(format!("`)` without `(` at byte {at}")),
                    }
                }
                parity ^= opened.pop().unwrap_or(false);
                continue;
            }
            // `!` binds tightest, then `&`, then `|`; both binary operators associate to the left.
            while let Some(&top) = ops.last() {
                let pops = top == Tok::Not || top == Tok::And || (top == Tok::Or && tok == Tok::Or);
                if !pops {
                    break;
                }
                ops.pop();
                program.push(to_op(top));
            }
            ops.push(tok);
            expect_operand = true;
        }
    }
    if expect_operand {
        return Err(if atoms.is_empty() { "empty".to_string() } else { "ends where a symbol is expected".to_string() });
    }
    while let Some(t) = ops.pop() {
        if t == Tok::Open {
            return Err("`(` not closed".to_string());
        }
        program.push(to_op(t));
    }
    Ok(Parsed { atoms, program })
}

fn to_op(t: Tok) -> Op {
    match t {
        Tok::Not => Op::Not,
        Tok::And => Op::And,
        _ => Op::Or,
    }
}

/// One composite, resolved against the registry.
#[derive(Debug, Clone)]
pub struct Composite {
    pub name: String,
    pub expression: String,
    pub group: Group,
    /// Whether it is evaluated unless settings say otherwise.
    pub enabled: bool,
    effect: Effect,
    atoms: Vec<Atom>,
    program: Vec<Op>,
}

impl Composite {
    /// Whether the expression holds for these symbols. The stack holds at most one value per atom.
    fn holds(&self, symbols: &[SymbolResult]) -> bool {
        let mut stack: Vec<bool> = Vec::with_capacity(self.atoms.len());
        for op in &self.program {
            let v = match *op {
                Op::Atom(i) => self.atoms[i].present(symbols),
                Op::Not => !stack.pop().unwrap_or(false),
                Op::And => {
                    let (b, a) = (stack.pop().unwrap_or(false), stack.pop().unwrap_or(false));
                    a && b
                }
                Op::Or => {
                    let (b, a) = (stack.pop().unwrap_or(false), stack.pop().unwrap_or(false));
                    a || b
                }
            };
            stack.push(v);
        }
        stack.pop().unwrap_or(false)
    }
}

impl Atom {
    fn present(&self, symbols: &[SymbolResult]) -> bool {
        symbols.iter().any(|s| self.covers(s))
    }

    fn covers(&self, s: &SymbolResult) -> bool {
        match &self.kind {
            AtomKind::Symbol(name) => s.name == *name,
            AtomKind::Group(g) => s.group == *g,
        }
    }
}

/// The compiled composites of one engine, built-in ones included.
#[derive(Debug, Clone, Default)]
pub struct Composites {
    list: Vec<Composite>,
}

impl Composites {
    /// Merges the built-in composites with the configured ones, checks and resolves them, and registers each
    /// composite's symbol. Every error names the composite and what is wrong.
    pub fn compile(configured: &[CompositeConfig], registry: &mut Registry) -> Result<Composites, String> {
        if configured.len() > MAX_COMPOSITES {
            return Err(format!("more than {MAX_COMPOSITES} composites"));
        }
        let mut seen: Vec<&str> = Vec::new();
        for c in configured {
            if seen.contains(&c.name.as_str()) {
                return Err(format!("{}: defined twice", c.name));
            }
            seen.push(&c.name);
        }
        struct Entry {
            name: String,
            expression: String,
            score: f64,
            policy: CompositePolicy,
            factor: Option<f64>,
            enabled: bool,
            group: Option<String>,
            description: String,
            remedy: String,
        }
        let mut entries: Vec<Entry> = Vec::new();
        for b in BUILTINS {
            let own = configured.iter().find(|c| c.name == b.name);
            let entry = match own {
                // Replaced: the administrator's expression, with the built-in texts unless given.
                Some(c) if c.expression.is_some() => Entry {
                    name: c.name.clone(),
                    expression: c.expression.clone().unwrap_or_default(),
                    score: c.score,
                    policy: c.policy,
                    factor: c.factor,
                    enabled: c.enabled,
                    group: c.group.clone(),
                    description: c.description.clone().unwrap_or_else(|| b.description.to_string()),
                    remedy: b.remedy.to_string(),
                },
                // Switched (only `enabled`, and nothing else, may be given without an expression).
                Some(c) => {
                    if c.score != 0.0
                        || c.policy != CompositePolicy::default()
                        || c.factor.is_some()
                        || c.group.is_some()
                    {
                        return Err(format!(
                            "{}: to change a built-in composite, give its whole definition (expression included); \
                             without an expression only `enabled` may be set",
                            c.name
                        ));
                    }
                    Entry {
                        name: b.name.to_string(),
                        expression: b.expression.to_string(),
                        score: b.score,
                        policy: b.policy,
                        factor: b.factor,
                        enabled: c.enabled,
                        group: None,
                        description: c.description.clone().unwrap_or_else(|| b.description.to_string()),
                        remedy: b.remedy.to_string(),
                    }
                }
                None => Entry {
                    name: b.name.to_string(),
                    expression: b.expression.to_string(),
                    score: b.score,
                    policy: b.policy,
                    factor: b.factor,
                    enabled: true,
                    group: None,
                    description: b.description.to_string(),
                    remedy: b.remedy.to_string(),
                },
            };
            entries.push(entry);
        }
        for c in configured.iter().filter(|c| !BUILTINS.iter().any(|b| b.name == c.name)) {
            let Some(expression) = &c.expression else {
                return Err(format!(
                    "{}: no expression (only a built-in composite may be listed without one: {})",
                    c.name,
                    BUILTINS.iter().map(|b| b.name).collect::<Vec<_>>().join(", ")
                ));
            };
            entries.push(Entry {
                name: c.name.clone(),
                expression: expression.clone(),
                score: c.score,
                policy: c.policy,
                factor: c.factor,
                enabled: c.enabled,
                group: c.group.clone(),
                description: c.description.clone().unwrap_or_else(|| format!("The composite {expression} holds.")),
                remedy: format!(
                    "A composite of this configuration ([[composites]] name = \"{}\"): change or switch it off there.",
                    c.name
                ),
            });
        }
        let mut list = Vec::with_capacity(entries.len());
        for e in &entries {
            let name = &e.name;
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') {
                return Err(format!("{name:?}: a composite's name is UPPER_SNAKE (A-Z, 0-9, _)"));
            }
            if registry.id(name).is_some() {
                return Err(format!(
                    "{name}: a symbol of that name exists already; a composite needs a name of its own"
                ));
            }
            if !e.score.is_finite() {
                return Err(format!("{name}: score must be a number"));
            }
            let factor = match (e.policy, e.factor) {
                (_, Some(f)) if !(0.0..=1.0).contains(&f) => {
                    return Err(format!("{name}: factor must be between 0 and 1 (got {f})"))
                }
                (CompositePolicy::ScaleWeight, None) => {
                    return Err(format!("{name}: policy \"scale_weight\" needs a factor (0 to 1)"))
                }
                (_, f) => f,
            };
            let effect = match e.policy {
                CompositePolicy::RemoveWeight => Effect::RemoveWeight,
                CompositePolicy::RemoveSymbol => Effect::RemoveSymbol,
                CompositePolicy::Leave => Effect::Leave,
                CompositePolicy::ScaleWeight => Effect::Scale(factor.unwrap_or(1.0)),
            };
            let parsed = parse(&e.expression).map_err(|why| format!("{name}: expression {:?}: {why}", e.expression))?;
            let mut atoms = Vec::with_capacity(parsed.atoms.len());
            for (text, prefix, negated) in &parsed.atoms {
                let kind = if let Some(group) = text.strip_prefix("group:") {
                    match registry.iter().find(|d| d.group.as_str() == group) {
                        Some(d) => AtomKind::Group(d.group),
                        None => return Err(format!("{name}: no such group {group:?} (see `mailsift symbols`)")),
                    }
                } else if entries.iter().any(|o| o.name == *text) {
                    return Err(format!("{name}: names the composite {text}; composites see only the checks' symbols"));
                } else if registry.id(text).is_some() {
                    AtomKind::Symbol(text.clone())
                } else {
                    return Err(format!("{name}: no such symbol {text} (see `mailsift symbols`)"));
                };
                let effect = match prefix {
                    Some('~') => Some(Effect::RemoveWeight),
                    Some('^') => Some(Effect::RemoveSymbol),
                    Some('-') => Some(Effect::Leave),
                    Some(_) => match factor {
                        Some(f) => Some(Effect::Scale(f)),
                        None => return Err(format!("{name}: `*{text}` scales by `factor`, which is not set")),
                    },
                    None => None,
                };
                atoms.push(Atom { kind, effect, negated: *negated });
            }
            let group = match &e.group {
                Some(g) => match registry.iter().find(|d| d.group.as_str() == g) {
                    Some(d) => d.group,
                    None => return Err(format!("{name}: group: no such group {g:?}")),
                },
                // The family of its first symbol: a composite about authentication counts with it.
                None => atoms
                    .iter()
                    .find_map(|a| match &a.kind {
                        AtomKind::Symbol(s) => registry.by_name(s).map(|d| d.group),
                        AtomKind::Group(g) => Some(*g),
                    })
                    .unwrap_or(Group::Headers),
            };
            registry.add(SymbolDef {
                name: name.clone(),
                group,
                weight: e.score,
                default_weight: e.score,
                description: e.description.clone(),
                remedy: e.remedy.clone(),
                asf: None,
            })?;
            list.push(Composite {
                name: name.clone(),
                expression: e.expression.clone(),
                group,
                enabled: e.enabled,
                effect,
                atoms,
                program: parsed.program,
            });
        }
        Ok(Composites { list })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Composite> {
        self.list.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Evaluates every enabled composite on the symbols as the checks found them, then changes the matched
    /// symbols and adds each composite that held, with a detail naming what it changed. `enabled` says
    /// whether a composite runs (the settings' switch over its configured default); `weight` gives a
    /// composite's own weight. Returns the names of symbols whose weight was taken away (removed, or
    /// weighed 0), whose side effects (an ASF option's high confidence) go with them.
    pub fn apply(
        &self,
        symbols: &mut Vec<SymbolResult>,
        enabled: impl Fn(&Composite) -> bool,
        weight: impl Fn(&str) -> f64,
    ) -> Vec<String> {
        // Per symbol: the strongest change any composite asks for.
        let mut changes: Vec<Option<Effect>> = vec![None; symbols.len()];
        let mut held: Vec<(&Composite, Vec<(usize, Effect)>)> = Vec::new();
        for c in self.list.iter().filter(|c| enabled(c)) {
            if !c.holds(symbols) {
                continue;
            }
            let mut touched: Vec<(usize, Effect)> = Vec::new();
            for a in c.atoms.iter().filter(|a| !a.negated) {
                let effect = a.effect.unwrap_or(c.effect);
                for (i, s) in symbols.iter().enumerate() {
                    if a.covers(s) && !touched.iter().any(|t| t.0 == i) {
                        touched.push((i, effect));
                        if changes[i].is_none_or(|e| effect.stronger_than(e)) {
                            changes[i] = Some(effect);
                        }
                    }
                }
            }
            held.push((c, touched));
        }
        if held.is_empty() {
            return Vec::new();
        }
        // The details are written from the symbols as found, before anything changes.
        let mut added = Vec::with_capacity(held.len());
        for (c, touched) in &held {
            let mut changed = Vec::new();
            let mut kept = Vec::new();
            for &(i, effect) in touched {
                let s = &symbols[i];
                match effect {
                    Effect::Leave => kept.push(s.name.clone()),
                    Effect::RemoveWeight => changed.push(format!("{} {:.2} -> 0", s.name, s.score)),
                    Effect::RemoveSymbol => changed.push(format!("{} ({:.2}) removed", s.name, s.score)),
                    Effect::Scale(f) => changed.push(format!("{} {:.2} -> {:.2}", s.name, s.score, s.score * f)),
                }
            }
            let mut detail = if changed.is_empty() { "changed nothing".to_string() } else { changed.join(", ") };
            if !kept.is_empty() {
                detail.push_str(&format!("; with {}", kept.join(", ")));
            }
            crate::symbols::truncate_at_char(&mut detail, 300);
            added.push(SymbolResult {
                name: c.name.clone(),
                group: c.group,
                score: weight(&c.name),
                detail,
                asf_mode: None,
                asf_effect: None,
            });
        }
        let mut neutralised = Vec::new();
        let mut i = 0;
        symbols.retain_mut(|s| {
            let change = changes.get(i).copied().flatten();
            i += 1;
            match change {
                Some(Effect::RemoveSymbol) => {
                    neutralised.push(s.name.clone());
                    false
                }
                Some(Effect::RemoveWeight) => {
                    neutralised.push(s.name.clone());
                    s.score = 0.0;
                    true
                }
                Some(Effect::Scale(f)) => {
                    if f == 0.0 {
                        neutralised.push(s.name.clone());
                    }
                    s.score *= f;
                    true
                }
                _ => true,
            }
        });
        symbols.extend(added);
        neutralised
    }
}

/// Reports the facts of [`FACT_SYMBOLS`]: a mailing list (List-Id) whose own domain's DKIM signature
/// verified; bulk mail with a signed one-click unsubscribe. Returns (symbol, detail) pairs for the caller
/// to record.
pub fn facts(
    msg: &crate::Message<'_>,
    envelope: &crate::Envelope,
    evidence: &crate::Evidence,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let Some(sender) = evidence.sender.as_ref() else { return out };
    if let Some(detail) = one_click_signed(msg, envelope, sender) {
        out.push(("BULK_ONE_CLICK_SIGNED", detail));
    }
    let Some(list_id) = msg.header("List-Id") else { return out };
    // RFC 2919: an optional phrase, then the list-id in angle brackets (bare ids are common enough).
    let id = match (list_id.rfind('<'), list_id.rfind('>')) {
        (Some(a), Some(b)) if a < b => &list_id[a + 1..b],
        _ => list_id,
    };
    let id = id.trim().trim_end_matches('.').to_ascii_lowercase();
    if id.is_empty() || !id.contains('.') {
        return out;
    }
    let list_domain = crate::message::urls::registrable_domain(&id);
    let signer = sender.dkim.iter().find(|d| {
        d.verdict == crate::evidence::DkimVerdict::Pass
            && crate::message::urls::registrable_domain(&d.domain.to_ascii_lowercase()) == list_domain
    });
    if let Some(d) = signer {
        out.push(("MAILING_LIST_SIGNED", format!("{id}, signed by {}", d.domain)));
    }
    out
}

/// RFC 8058 one-click unsubscribe, signed: `List-Unsubscribe` holds an `https:` URI, `List-Unsubscribe-Post`
/// says `List-Unsubscribe=One-Click`, and a DKIM signature that verified, of the From: domain (same
/// registrable domain), names both headers in its `h=` tag. The envelope sender must be in the From:
/// domain too, so that the sender-domain reputation the composite asks for is the From: domain's. Returns
/// the detail (the signing domain).
fn one_click_signed(
    msg: &crate::Message<'_>,
    envelope: &crate::Envelope,
    sender: &crate::evidence::SenderFacts,
) -> Option<String> {
    use crate::message::urls::registrable_domain;
    let post = msg.header("List-Unsubscribe-Post")?;
    if !post.trim().eq_ignore_ascii_case("List-Unsubscribe=One-Click") {
        return None;
    }
    let unsubscribe = msg.header("List-Unsubscribe")?;
    if !unsubscribe
        .split(',')
        .any(|u| u.trim().trim_start_matches('<').get(..8).is_some_and(|s| s.eq_ignore_ascii_case("https://")))
    {
        return None;
    }
    let from = registrable_domain(&msg.from.as_ref()?.domain.to_ascii_lowercase());
    let mail_from = envelope.mail_from.as_deref()?.trim_matches(['<', '>']);
    let (_, envelope_domain) = mail_from.rsplit_once('@')?;
    if from.is_empty() || registrable_domain(&envelope_domain.to_ascii_lowercase()) != from {
        return None;
    }
    // The signature's own h= tag as the verifier read it: another DKIM-Signature header of the same domain
    // and selector, which anyone can add, says nothing about what the verified one covers.
    let covers = |d: &crate::evidence::DkimFacts, name: &str| d.signed_headers.iter().any(|h| h == name);
    let signer = sender.dkim.iter().find(|d| {
        d.verdict == crate::evidence::DkimVerdict::Pass
            && registrable_domain(&d.domain.to_ascii_lowercase()) == from
            && covers(d, "list-unsubscribe")
            && covers(d, "list-unsubscribe-post")
    })?;
    Some(format!("{} signs List-Unsubscribe and List-Unsubscribe-Post", signer.domain))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn atoms(p: &Parsed) -> Vec<(String, Option<char>, bool)> {
        p.atoms.clone()
    }

    #[test]
    fn parses_precedence_and_negation() {
        let p = parse("A | B & !C").unwrap();
        assert_eq!(p.program, vec![Op::Atom(0), Op::Atom(1), Op::Atom(2), Op::Not, Op::And, Op::Or]);
        let p = parse("!(A & -B) | ~C").unwrap();
        let a = atoms(&p);
        assert_eq!(a[0], ("A".into(), None, true));
        assert_eq!(a[1], ("B".into(), Some('-'), true));
        assert_eq!(a[2], ("C".into(), Some('~'), false));
        let p = parse("!!A").unwrap();
        assert!(!atoms(&p)[0].2, "double negation is no negation");
        let p = parse("!(!(A)) & group:auth").unwrap();
        assert!(!atoms(&p)[0].2);
        assert_eq!(atoms(&p)[1].0, "group:auth");
    }

    #[test]
    fn refuses_malformed_expressions_with_where() {
        for (expr, says) in [
            ("", "empty"),
            ("A &", "ends where"),
            ("A B", "expected `&`"),
            ("(A", "not closed"),
            ("A)", "without `(`"),
            ("& A", "expected a symbol"),
            ("A & ~", "after the prefix"),
            ("(A !)", "expected `&`"),
            ("A && B", "expected a symbol"),
        ] {
            let e = parse(expr).unwrap_err();
            assert!(e.contains(says), "{expr:?}: {e}");
        }
        let deep = format!("{}A{}", "(".repeat(MAX_DEPTH + 1), ")".repeat(MAX_DEPTH + 1));
        assert!(parse(&deep).unwrap_err().contains("nested"));
        let ok = format!("{}A{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
        let many = vec!["A"; MAX_ATOMS + 1].join(" | ");
        assert!(parse(&many).unwrap_err().contains("more than"));
        let long = "A".repeat(MAX_EXPRESSION_BYTES + 1);
        assert!(parse(&long).unwrap_err().contains("longer"));
    }

    #[test]
    fn strongest_change_wins() {
        assert!(Effect::RemoveSymbol.stronger_than(Effect::RemoveWeight));
        assert!(Effect::RemoveWeight.stronger_than(Effect::Scale(0.0)));
        assert!(Effect::Scale(0.2).stronger_than(Effect::Scale(0.5)));
        assert!(Effect::Scale(0.9).stronger_than(Effect::Leave));
        assert!(!Effect::Leave.stronger_than(Effect::Leave));
    }
}
