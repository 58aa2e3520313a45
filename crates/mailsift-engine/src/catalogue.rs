//! Every built-in symbol in one place: the typed names (`sym::HTML_IFRAME`) and the spec tables, gathered
//! from the modules that define them (each check module, the policy, the parse).
//!
//! The symbol machinery itself (names, specs, the registry, the hit collector) is in `symbols.rs`, which
//! every check uses; this list sits above the checks and the policy, for whoever needs them all (diagnosis,
//! the registry tests, documentation), so that no module has to reach up to the checks to name a symbol.

/// Every built-in symbol as a typed constant: `sym::HTML_IFRAME`. Symbols that configuration defines
/// (rules, DNS lists, composites) have no constant: their names are only known at run time.
pub mod sym {
    pub use crate::checks::asf::sym::*;
    pub use crate::checks::attachments::sym::*;
    pub use crate::checks::auth::sym::*;
    pub use crate::checks::classifier::sym::*;
    pub use crate::checks::connection::sym::*;
    pub use crate::checks::content::sym::*;
    pub use crate::checks::headers::sym::*;
    pub use crate::checks::html::sym::*;
    pub use crate::checks::obfuscation::sym::*;
    pub use crate::checks::reputation::sym::*;
    pub use crate::checks::rules::sym::*;
    pub use crate::checks::urls::sym::*;
    pub use crate::policy::sym::*;
    pub use crate::symbols::parse_sym::*;

    use crate::symbols::Sym;

    /// Every module's `ALL`, for the registry test (shadows the modules' own `ALL`s).
    pub const ALL: &[&[Sym]] = &[
        crate::checks::asf::sym::ALL,
        crate::checks::attachments::sym::ALL,
        crate::checks::auth::sym::ALL,
        crate::checks::classifier::sym::ALL,
        crate::checks::connection::sym::ALL,
        crate::checks::content::sym::ALL,
        crate::checks::headers::sym::ALL,
        crate::checks::html::sym::ALL,
        crate::checks::obfuscation::sym::ALL,
        crate::checks::reputation::sym::ALL,
        crate::checks::rules::sym::ALL,
        crate::checks::urls::sym::ALL,
        crate::policy::sym::ALL,
        crate::symbols::parse_sym::ALL,
    ];
}

/// Every built-in symbol table, beside [`sym::ALL`]: the checks' and the policy's.
pub fn builtin_tables() -> Vec<&'static [crate::symbols::SymbolSpec]> {
    let mut t = crate::checks::all_symbols();
    t.push(crate::policy::SYMBOLS);
    t
}
