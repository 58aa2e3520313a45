//! The error of a gateway configuration that cannot be used, naming the `[smtp]` field. A leaf module of its
//! own, so that the modules whose settings `config.rs` gathers (virus, limits, greylist, guard) can name it
//! without depending on `config` (which depends on them).

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Toml(String),
    #[error("[smtp] {field}: {reason}")]
    Invalid { field: String, reason: String },
}
