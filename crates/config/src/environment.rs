//! The outside world as the config crate sees it: environment variables and
//! the hostname, injected so that tests pass a map instead of mutating the
//! process environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Environment variables and machine facts the configuration depends on.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    pub vars: BTreeMap<String, String>,
    pub hostname: String,
    /// The working directory oj started in: relative paths from env and
    /// `--set` are relative to it. `None` leaves them as written.
    pub cwd: Option<PathBuf>,
}

impl Environment {
    /// An environment from explicit variables (tests, embedding).
    pub fn new<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
        hostname: impl Into<String>,
    ) -> Self {
        Environment {
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            hostname: hostname.into(),
            cwd: None,
        }
    }

    /// The same environment with a working directory.
    pub fn with_cwd(mut self, cwd: impl Into<PathBuf>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    /// `path` made absolute against the working directory (as written when
    /// it is absolute or no working directory is known).
    pub fn absolute(&self, path: &Path) -> PathBuf {
        match &self.cwd {
            Some(cwd) if path.is_relative() => cwd.join(path),
            _ => path.to_path_buf(),
        }
    }

    /// A variable's value; unset and empty are the same.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// `$XDG_CONFIG_HOME`, else `~/.config`.
    pub fn config_home(&self) -> Option<PathBuf> {
        self.get("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| self.get("HOME").map(|h| PathBuf::from(h).join(".config")))
    }

    /// `$XDG_STATE_HOME`, else `~/.local/state`.
    pub fn state_home(&self) -> Option<PathBuf> {
        self.get("XDG_STATE_HOME").map(PathBuf::from).or_else(|| {
            self.get("HOME")
                .map(|h| PathBuf::from(h).join(".local/state"))
        })
    }
}
