//! Per-message settings: what may differ between the domains one engine judges for (thresholds, ASF modes,
//! symbol weights, composites on or off), looked up per message instead of building an engine per domain.
//!
//! The engine (registry, compiled rules, trust boundary, composites, model) is built once; a [`Settings`] is
//! built from it per domain (`Engine::settings`), checked against its registry, and handed to
//! [`crate::Engine::judge_with_settings`] with each message. A message judged with a domain's settings gets
//! the verdict an engine built from the configuration with that domain's overrides would give.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::config::{AsfMode, EngineConfig, Thresholds};
use crate::symbols::SymbolDef;
use crate::{Engine, EngineError};

/// The overrides of one set of settings, as written in configuration or stored for a domain. Empty: the
/// engine's own configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SettingsConfig {
    /// Thresholds instead of `[thresholds]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<Thresholds>,
    /// ASF options set differently: `option = "on" | "off" | "test"`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub asf: BTreeMap<String, AsfMode>,
    /// Symbol weights over `[weights]`: `SYMBOL = weight` (composites included).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub weights: BTreeMap<String, f64>,
    /// Composites switched on or off by name (built-in or configured): `NAME = true | false`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub composites: BTreeMap<String, bool>,
}

impl SettingsConfig {
    pub fn is_empty(&self) -> bool {
        *self == SettingsConfig::default()
    }
}

/// Settings checked against one engine, ready to judge with. Cheap to keep one per domain: only what
/// differs is held (a copy of the engine's configuration only when ASF options differ, since the checks
/// read them there).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    name: String,
    thresholds: Option<Thresholds>,
    /// The engine's configuration with this settings' ASF options, when they differ.
    config: Option<Box<EngineConfig>>,
    weights: FxHashMap<String, f64>,
    composites: FxHashMap<String, bool>,
}

impl Settings {
    /// What the settings are for (a domain's name; empty for the engine's own).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether these are the engine's own settings (nothing overridden).
    pub fn is_default(&self) -> bool {
        self.thresholds.is_none() && self.config.is_none() && self.weights.is_empty() && self.composites.is_empty()
    }

    /// The configuration the checks read: the engine's, or its copy with these ASF options.
    pub(crate) fn config<'a>(&'a self, base: &'a EngineConfig) -> &'a EngineConfig {
        self.config.as_deref().unwrap_or(base)
    }

    pub(crate) fn thresholds<'a>(&'a self, base: &'a EngineConfig) -> &'a Thresholds {
        self.thresholds.as_ref().unwrap_or(&base.thresholds)
    }

    /// The thresholds a message judged with these settings meets: these settings' own, else `base` (the
    /// engine's `[thresholds]`).
    pub fn thresholds_or<'a>(&'a self, base: &'a Thresholds) -> &'a Thresholds {
        self.thresholds.as_ref().unwrap_or(base)
    }

    /// The configuration the checks read under these settings (the ASF options among them): the engine's
    /// (`base`), or its copy with these settings' ASF options.
    pub fn config_or<'a>(&'a self, base: &'a EngineConfig) -> &'a EngineConfig {
        self.config(base)
    }

    /// A symbol's weight under these settings.
    pub(crate) fn weight(&self, def: &SymbolDef) -> f64 {
        self.weights.get(&def.name).copied().unwrap_or(def.weight)
    }

    /// Whether a composite runs under these settings.
    pub(crate) fn composite_enabled(&self, c: &crate::composites::Composite) -> bool {
        self.composites.get(&c.name).copied().unwrap_or(c.enabled)
    }
}

impl Engine {
    /// Checks `overrides` against this engine and returns settings to judge with. Errors name the setting
    /// (`<name>.asf.<option>`, `<name>.weights.<symbol>`, …) and why.
    pub fn settings(&self, name: &str, overrides: &SettingsConfig) -> Result<Settings, EngineError> {
        let err = |what: String| EngineError::Settings(format!("{name}: {what}"));
        if let Some(t) = &overrides.thresholds {
            let ordered = t.tag <= t.quarantine && t.quarantine <= t.reject;
            if !(ordered && [t.tag, t.quarantine, t.reject].iter().all(|v| v.is_finite())) {
                return Err(err(format!(
                    "thresholds must satisfy tag <= quarantine <= reject (got {} / {} / {})",
                    t.tag, t.quarantine, t.reject
                )));
            }
        }
        let config = if overrides.asf.is_empty() {
            None
        } else {
            let mut asf = self.config.asf.clone();
            for (option, mode) in &overrides.asf {
                asf.set(option, *mode).map_err(err)?;
            }
            let differs = crate::config::AsfConfig::OPTIONS.iter().any(|o| asf.get(o) != self.config.asf.get(o));
            differs.then(|| Box::new(EngineConfig { asf, ..self.config.clone() }))
        };
        let mut weights = FxHashMap::default();
        for (symbol, w) in &overrides.weights {
            if !w.is_finite() {
                return Err(err(format!("weights.{symbol}: the weight must be a number")));
            }
            if crate::policy::SYMBOLS.iter().any(|s| s.name == symbol) {
                return Err(err(format!("weights.{symbol}: policy symbols carry no weight")));
            }
            if self.registry.id(symbol).is_none() {
                return Err(err(format!("weights.{symbol}: no such symbol (see `mailsift symbols`)")));
            }
            weights.insert(symbol.clone(), *w);
        }
        let mut composites = FxHashMap::default();
        for (composite, on) in &overrides.composites {
            if !self.composites.iter().any(|c| c.name == *composite) {
                let known: Vec<&str> = self.composites.iter().map(|c| c.name.as_str()).collect();
                return Err(err(format!("composites.{composite}: no such composite (one of {})", known.join(", "))));
            }
            composites.insert(composite.clone(), *on);
        }
        Ok(Settings { name: name.to_string(), thresholds: overrides.thresholds.clone(), config, weights, composites })
    }

    /// The engine's own settings (nothing overridden), what [`Engine::judge`] uses.
    pub fn default_settings(&self) -> &Settings {
        &self.default_settings
    }
}
