//! A load that survives its errors: `oj config show` and `explain` print
//! what could be loaded, and client commands ignore errors in keys they do
//! not read. Each round leaves out what the errors are about (a key, a
//! variable, a file) and loads again, so every value left out falls back
//! to the layer below.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::environment::Environment;
use crate::error::{ConfigError, ConfigErrors};
use crate::layer::Layer;

use super::{LoadOptions, Loaded, load_with};

/// What a lenient load leaves out so the rest can load: keys (in every
/// layer), environment variables and files.
#[derive(Debug, Clone, Default)]
pub(super) struct Skip {
    pub(super) keys: BTreeSet<String>,
    pub(super) vars: BTreeSet<String>,
    pub(super) files: BTreeSet<PathBuf>,
}

impl Skip {
    /// Adds what `e` is about; false when there is nothing to leave out.
    fn add(&mut self, e: &ConfigError) -> bool {
        match (&e.key, &e.layer) {
            (Some(k), _) if k != "profile" => self.keys.insert(k.clone()),
            (None, Some(Layer::Env(var))) => self.vars.insert(var.clone()),
            (None, Some(Layer::File(path))) => self.files.insert(path.clone()),
            _ => false,
        }
    }

    /// Adds the section of the key `e` is about.
    fn widen(&mut self, e: &ConfigError) -> bool {
        match e.key.as_deref().and_then(|k| k.rsplit_once('.')) {
            Some((section, _)) => self.keys.insert(section.to_string()),
            None => false,
        }
    }

    pub(super) fn skips_key(&self, key: &str) -> bool {
        self.keys.iter().any(|k| {
            key == k || key.starts_with(k.as_str()) && key.as_bytes().get(k.len()) == Some(&b'.')
        })
    }
}

/// A configuration loaded around its errors: what could be loaded with the
/// offending values left out (each falls back to the layer below), and the
/// errors that were left out.
#[derive(Debug, Clone)]
pub struct Tolerated {
    pub loaded: Loaded,
    pub ignored: Vec<ConfigError>,
}

/// Loads like [`load`]; when it fails and `tolerate` accepts every error,
/// loads again without the offending keys, variables or files, and returns
/// the result with the errors it ignored. Errors `tolerate` refuses (or that
/// nothing can be left out for, like an unknown profile) are returned.
pub fn load_tolerant(
    opts: &LoadOptions,
    env: &Environment,
    tolerate: impl Fn(&ConfigError) -> bool,
) -> Result<Tolerated, ConfigErrors> {
    let mut skip = Skip::default();
    let mut ignored: Vec<ConfigError> = Vec::new();
    loop {
        match load_with(opts, env, &skip) {
            Ok(loaded) => return Ok(Tolerated { loaded, ignored }),
            Err(errors) => {
                if !errors.0.iter().all(&tolerate) {
                    let mut all = ignored;
                    all.extend(errors.0);
                    return Err(ConfigErrors(all));
                }
                let mut progress = false;
                for e in &errors.0 {
                    progress |= skip.add(e);
                }
                if !progress {
                    // A rule across keys (`client.cert` needs `client.key`):
                    // leave out the section the key is in.
                    for e in &errors.0 {
                        progress |= skip.widen(e);
                    }
                }
                for e in errors.0 {
                    if !ignored.contains(&e) {
                        ignored.push(e);
                    }
                }
                if !progress {
                    return Err(ConfigErrors(ignored));
                }
            }
        }
    }
}
