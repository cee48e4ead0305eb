//! Configuration errors: each names the key, the layer and what is valid.

use std::fmt;

use crate::layer::Layer;

/// One problem with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The dotted key, when the problem belongs to one.
    pub key: Option<String>,
    /// The layer the offending value came from (`default`, `profile NAME`,
    /// `file PATH`, `env VAR`, `flag --set`).
    pub layer: Option<Layer>,
    /// What is wrong and what would be valid. Never contains a secret.
    pub message: String,
}

impl ConfigError {
    pub fn new(key: Option<&str>, layer: Option<&Layer>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.map(str::to_string),
            layer: layer.cloned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.key, &self.layer) {
            (Some(k), Some(l)) => write!(f, "{k} (from {l}): {}", self.message),
            (Some(k), None) => write!(f, "{k}: {}", self.message),
            (None, Some(l)) => write!(f, "{l}: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

/// Every problem found, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
