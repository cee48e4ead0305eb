//! `oj config check`'s look at the TLS files: every problem (missing or
//! unreadable file, a key that does not match, an expired certificate) as a
//! typed finding, and warnings for a certificate about to expire.

use std::time::{Duration, SystemTime};

use oj_config::TlsConfig;
use rustls::server::WebPkiClientVerifier;

use super::{
    EXPIRY_WARNING, TlsError, load_client_ca, load_pair, parse_certs, provider, read, rfc3339, unix,
};

/// What `oj config check` prints about the TLS files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

/// One finding about a TLS file: the key it is about and what is wrong,
/// kept apart so that `oj config check` adds the key's layer without
/// parsing the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: &'static str,
    /// What follows the key: ` = /path: problem`.
    pub detail: String,
}

impl From<TlsError> for Problem {
    fn from(e: TlsError) -> Self {
        Problem {
            key: e.key(),
            detail: e.detail(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.key, self.detail)
    }
}

/// Checks the TLS files for `oj config check`: what would stop the daemon
/// (errors) and what will soon (warnings). Empty when `tls.enabled = false`.
pub fn check_files(cfg: &TlsConfig, now: SystemTime) -> CheckReport {
    let mut report = CheckReport::default();
    if !cfg.enabled {
        return report;
    }
    let (Some(cert_path), Some(key_path)) = (cfg.cert.as_deref(), cfg.key.as_deref()) else {
        // The config crate reports unset tls.cert / tls.key itself.
        return report;
    };
    let cert_bytes = read("tls.cert", cert_path)
        .map_err(|e| report.errors.push(e.into()))
        .ok();
    let key_bytes = read("tls.key", key_path)
        .map_err(|e| report.errors.push(e.into()))
        .ok();
    if let (Some(cert_bytes), Some(key_bytes)) = (&cert_bytes, &key_bytes) {
        match load_pair(cert_path, cert_bytes, key_path, key_bytes, now) {
            Ok(pair) => {
                let now_s = unix(now);
                let left = pair.info.not_after - now_s;
                if left <= EXPIRY_WARNING.as_secs() as i64 {
                    report.warnings.push(Problem {
                        key: "tls.cert",
                        detail: format!(
                        " = {}: the certificate (serial {}) expires at {} ({} from now); renew it soon",
                        cert_path.display(),
                        pair.info.serial,
                        pair.info.not_after_rfc3339(),
                        humantime::format_duration(Duration::from_secs(left.max(0) as u64 / 60 * 60))
                    ),
                    });
                }
                if pair.info.not_before > now_s {
                    report.warnings.push(Problem {
                        key: "tls.cert",
                        detail: format!(
                        " = {}: the certificate (serial {}) is not valid before {}; clients will refuse it until then (check the clock)",
                        cert_path.display(),
                        pair.info.serial,
                        rfc3339(pair.info.not_before)
                    ),
                    });
                }
            }
            Err(e) => report.errors.push(e.into()),
        }
    } else if let Some(cert_bytes) = &cert_bytes
        && let Err(e) = parse_certs("tls.cert", cert_path, cert_bytes)
    {
        report.errors.push(e.into());
    }
    if let Some(path) = &cfg.client_ca {
        match read("tls.client_ca", path).and_then(|b| load_client_ca(path, &b)) {
            Ok(roots) => {
                if let Err(e) =
                    WebPkiClientVerifier::builder_with_provider(roots, provider()).build()
                {
                    report.errors.push(Problem {
                        key: "tls.client_ca",
                        detail: format!(
                            " = {}: cannot verify client certificates with it ({e})",
                            path.display()
                        ),
                    });
                }
            }
            Err(e) => report.errors.push(e.into()),
        }
    }
    report
}
