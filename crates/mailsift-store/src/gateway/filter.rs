//! The WHERE clause the message log's search, the quarantine's list and the dashboard statistics build from a
//! query: one place for how a substring, an exact value, a time range, a domain scope and a page turn into SQL
//! with numbered arguments, so the searches cannot drift apart.
//!
//! Substring and domain filters call the functions the reader connections register (`mailsift_contains`,
//! `mailsift_ends_with`, `mailsift_lower`, see `mod.rs`), because SQLite's own LIKE and lower() fold ASCII only.

use rusqlite::types::Value;

use super::DEFAULT_LIMIT;

/// A WHERE clause under construction, with its numbered arguments.
#[derive(Default)]
pub(super) struct Filter {
    conditions: Vec<String>,
    args: Vec<Value>,
}

impl Filter {
    /// Adds an argument; returns its placeholder.
    pub fn arg(&mut self, v: impl Into<Value>) -> String {
        self.args.push(v.into());
        format!("?{}", self.args.len())
    }

    /// Adds a condition as SQL (its arguments added with [`Filter::arg`]).
    pub fn and(&mut self, condition: impl Into<String>) {
        self.conditions.push(condition.into());
    }

    /// Case-insensitive substring of any of `columns`, when `filter` holds more than blanks.
    pub fn contains(&mut self, columns: &[&str], filter: &Option<String>) {
        let Some(needle) = needle(filter) else { return };
        let a = self.arg(needle);
        let any: Vec<String> = columns.iter().map(|c| format!("mailsift_contains({c}, {a})")).collect();
        self.and(format!("({})", any.join(" OR ")));
    }

    /// `column` equals `value` exactly, when given.
    pub fn equals(&mut self, column: &str, value: &Option<String>) {
        if let Some(v) = value {
            let a = self.arg(v.clone());
            self.and(format!("{column} = {a}"));
        }
    }

    /// `column` between `since` and `until`, both inclusive, each when given.
    pub fn time_range(&mut self, column: &str, since: Option<i64>, until: Option<i64>) {
        if let Some(since) = since {
            let a = self.arg(since);
            self.and(format!("{column} >= {a}"));
        }
        if let Some(until) = until {
            let a = self.arg(until);
            self.and(format!("{column} <= {a}"));
        }
    }

    /// Message-log rows of these domains (none: no condition): a recipient ends with `@domain`, or the row is
    /// outbound and its envelope sender does, ignoring case.
    ///
    /// The recipients column is the JSON array of strings, and a recipient ends with `@domain` exactly when the
    /// JSON text holds `@domain"` (the domain JSON-escaped the same way): an unescaped quote ends a string, so
    /// one substring test per domain replaces unpacking the array for every row.
    pub fn log_in_domains(&mut self, domains: &[String]) {
        let Some(domains) = self.scope(domains) else { return };
        let mut any = Vec::with_capacity(domains.len() * 2);
        for d in &domains {
            let quoted = serde_json::to_string(&format!("@{d}")).expect("a string serializes");
            let a = self.arg(quoted[1..].to_string());
            any.push(format!("mailsift_contains(recipients, {a})"));
        }
        let mut senders = Vec::with_capacity(domains.len());
        for d in &domains {
            let a = self.arg(format!("@{d}"));
            senders.push(format!("mailsift_ends_with(mail_from, {a})"));
        }
        any.push(format!("(direction = 'outbound' AND ({}))", senders.join(" OR ")));
        self.and(format!("({})", any.join(" OR ")));
    }

    /// Rows whose `column`, an address, ends with `@domain` for one of these domains, ignoring case (none: no
    /// condition).
    pub fn address_in_domains(&mut self, column: &str, domains: &[String]) {
        let Some(domains) = self.scope(domains) else { return };
        let any: Vec<String> = domains
            .iter()
            .map(|d| {
                let a = self.arg(format!("@{d}"));
                format!("mailsift_ends_with({column}, {a})")
            })
            .collect();
        self.and(format!("({})", any.join(" OR ")));
    }

    /// `column`, an address, equals `address` ignoring case, when given. ASCII addresses (nearly all) compare
    /// with `COLLATE NOCASE`, which an index on `column COLLATE NOCASE` serves; others fold with Unicode rules.
    pub fn address_is(&mut self, column: &str, address: &Option<String>) {
        let Some(address) = address.as_deref().map(str::trim) else { return };
        if address.is_ascii() {
            let a = self.arg(address.to_string());
            self.and(format!("{column} = {a} COLLATE NOCASE"));
        } else {
            let a = self.arg(address.to_lowercase());
            self.and(format!("mailsift_lower({column}) = {a}"));
        }
    }

    /// The normalized domains of a scope; `None` when there is no scope. A scope given as only blanks matches
    /// nothing rather than everything: an empty scope must never widen to the whole log by accident.
    fn scope(&mut self, domains: &[String]) -> Option<Vec<String>> {
        if domains.is_empty() {
            return None;
        }
        let normalized = normalize_domains(domains);
        if normalized.is_empty() {
            self.and("0");
            return None;
        }
        Some(normalized)
    }

    /// The WHERE clause, or nothing when there is no condition.
    pub fn clause(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.conditions.join(" AND "))
        }
    }

    /// ` LIMIT ... OFFSET ...` for a page: `limit` 0 means [`DEFAULT_LIMIT`].
    pub fn page(&mut self, limit: usize, offset: usize) -> String {
        let limit = if limit == 0 { DEFAULT_LIMIT } else { limit };
        let l = self.arg(limit.min(i64::MAX as usize) as i64);
        let o = self.arg(offset.min(i64::MAX as usize) as i64);
        format!(" LIMIT {l} OFFSET {o}")
    }

    pub fn args(&self) -> rusqlite::ParamsFromIter<std::slice::Iter<'_, Value>> {
        rusqlite::params_from_iter(self.args.iter())
    }
}

/// A substring filter as the searches use it: lowercased, `None` when empty.
fn needle(filter: &Option<String>) -> Option<String> {
    filter.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_lowercase)
}

/// Domains as the scopes compare them: trimmed, lowercased, without a leading `@`, no empties, no repeats.
pub(crate) fn normalize_domains(domains: &[String]) -> Vec<String> {
    let mut out: Vec<String> =
        domains.iter().map(|d| d.trim().trim_start_matches('@').to_lowercase()).filter(|d| !d.is_empty()).collect();
    out.sort();
    out.dedup();
    out
}
