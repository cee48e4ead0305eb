//! TLS for the daemon's TCP listener and for the client, with rustls (ring).
//!
//! Why it exists: in a cluster with flat pod networking any pod can read
//! plaintext traffic, bearer token included, so `oj` terminates TLS itself
//! (SPEC §3.10) and picks up certificates that cert-manager rotates on disk
//! without a restart.
//!
//! # Server side (used by the daemon)
//!
//! ```ignore
//! let tls = oj_adapters::tls::ServerTls::build(&cfg.tls)?;          // TlsError -> exit 78
//! tls.spawn_reloader(cfg.tls.reload_interval, shutdown_future);     // rotation
//! loop {
//!     let (tcp, _) = listener.accept().await?;
//!     let acceptor = tls.acceptor();                                // current config, per connection
//!     tokio::spawn(async move {
//!         let Ok(stream) = acceptor.accept(tcp).await else { return };  // plaintext/bad client: handshake error
//!         // serve HTTP/1.1 + HTTP/2 (ALPN "h2", "http/1.1") with hyper_util auto::Builder
//!     });
//! }
//! ```
//!
//! * [`ServerTls::build`] reads `tls.cert`/`tls.key` (and `tls.client_ca`),
//!   refuses a missing/unreadable file, a key that does not match the
//!   certificate and an expired certificate; every error names the key, the
//!   path and what to do.
//! * The certificate is served through a swappable resolver, so handshakes
//!   that start after a reload use the new pair; connections already open
//!   keep theirs. A change of `tls.client_ca` rebuilds the whole
//!   `ServerConfig` (that is why [`ServerTls::acceptor`] must be called per
//!   connection rather than once).
//! * [`ServerTls::spawn_reloader`] polls the files every `tls.reload_interval`
//!   and compares their contents (a hash), so the Kubernetes `..data` symlink
//!   swap is seen whatever the mtimes say. A broken new pair is logged
//!   (`warn`, once per distinct content) and the old pair keeps serving.
//!
//! # `oj config check`
//!
//! [`check_files`] returns errors (missing/unreadable file, mismatch,
//! expired) and warnings (expires within 14 days, not yet valid).
//!
//! # Client side (used by the cli)
//!
//! [`client_config`] builds a `rustls::ClientConfig` for reqwest's
//! `ClientBuilder::tls_backend_preconfigured`: trust roots are exactly the
//! certificates in `client.ca` when it is set (a private CA, the usual case),
//! otherwise the operating system's verifier (rustls-platform-verifier), for
//! a daemon behind a publicly trusted certificate. `client.cert`/`client.key`
//! add a client certificate for mTLS. ALPN offers `h2` and `http/1.1`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oj_config::{TlsConfig, TlsVersion};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

mod check;
mod client;

pub use check::{CheckReport, Problem, check_files};
pub use client::{client_config, explain_client_error};

/// A certificate that expires within this window draws a warning in `oj config check`.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

/// ALPN protocols offered by the server and the client, most preferred first.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// What went wrong while loading TLS material. The `Display` form names the
/// config key, the path and what to do, ready for one stderr line.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file named by `key` cannot be used.
    #[error("{key}{}", self.detail())]
    File {
        key: &'static str,
        path: PathBuf,
        problem: String,
    },
    /// A key that is needed is unset.
    #[error("{key}{}", self.detail())]
    Unset {
        key: &'static str,
        why: &'static str,
        fix: &'static str,
    },
    /// rustls refused the assembled configuration.
    #[error("{key}{}", self.detail())]
    Setup { key: &'static str, problem: String },
}

impl TlsError {
    /// The config key this error is about (`tls.cert`, `client.ca`, …).
    pub fn key(&self) -> &'static str {
        match self {
            TlsError::File { key, .. }
            | TlsError::Unset { key, .. }
            | TlsError::Setup { key, .. } => key,
        }
    }

    /// What follows the key in the message (` = /path: problem`), so a
    /// caller can put the key's layer between them.
    pub fn detail(&self) -> String {
        match self {
            TlsError::File { path, problem, .. } => format!(" = {}: {problem}", path.display()),
            TlsError::Unset { why, fix, .. } => format!(" is unset but {why}; {fix}"),
            TlsError::Setup { problem, .. } => format!(": {problem}"),
        }
    }

    fn file(key: &'static str, path: &Path, problem: impl Into<String>) -> Self {
        TlsError::File {
            key,
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }
}

/// Facts about the certificate being served (for logs and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Serial number, lower-case hex without separators.
    pub serial: String,
    /// Subject, RFC 4514 style.
    pub subject: String,
    /// Validity end, Unix seconds.
    pub not_after: i64,
    /// Validity start, Unix seconds.
    pub not_before: i64,
}

impl CertInfo {
    /// `not_after` as an RFC 3339 UTC string.
    pub fn not_after_rfc3339(&self) -> String {
        rfc3339(self.not_after)
    }
}

fn rfc3339(unix: i64) -> String {
    if unix < 0 {
        return format!("{unix} (Unix seconds)");
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix as u64)).to_string()
}

/// Parses the end-entity certificate's facts.
pub fn cert_info(der: &[u8]) -> Result<CertInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("not a valid X.509 certificate ({e})"))?;
    let serial = cert
        .tbs_certificate
        .raw_serial()
        .iter()
        .skip_while(|b| **b == 0)
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    Ok(CertInfo {
        serial: if serial.is_empty() {
            "00".into()
        } else {
            serial
        },
        subject: cert.subject().to_string(),
        not_after: cert.validity().not_after.timestamp(),
        not_before: cert.validity().not_before.timestamp(),
    })
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| {
        let fix = match e.kind() {
            io::ErrorKind::NotFound => "the file does not exist; check the path",
            io::ErrorKind::PermissionDenied => {
                "permission denied; make the file readable by the user running oj"
            }
            _ => "cannot be read; check the path and permissions",
        };
        TlsError::file(key, path, format!("{fix} ({e})"))
    })
}

fn parse_certs(
    key: &'static str,
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::file(key, path, format!("is not valid PEM ({e}); give a PEM file with -----BEGIN CERTIFICATE----- blocks")))?;
    if certs.is_empty() {
        return Err(TlsError::file(
            key,
            path,
            "holds no certificate; give a PEM file with at least one -----BEGIN CERTIFICATE----- block",
        ));
    }
    Ok(certs)
}

fn parse_key(
    key: &'static str,
    path: &Path,
    bytes: &[u8],
) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(bytes).map_err(|e| {
        TlsError::file(
            key,
            path,
            format!("holds no usable private key ({e}); give a PEM file with a PKCS#8, PKCS#1 (RSA) or SEC1 (EC) private key"),
        )
    })
}

fn unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// A certificate/key pair that has been checked, with its facts.
struct LoadedPair {
    certified: Arc<CertifiedKey>,
    info: CertInfo,
}

/// Loads and checks the pair named by `cert`/`key` (the bytes are given so
/// the caller can remember what it loaded).
fn load_pair(
    cert_path: &Path,
    cert_bytes: &[u8],
    key_path: &Path,
    key_bytes: &[u8],
    now: SystemTime,
) -> Result<LoadedPair, TlsError> {
    let chain = parse_certs("tls.cert", cert_path, cert_bytes)?;
    let info = cert_info(&chain[0]).map_err(|e| {
        TlsError::file(
            "tls.cert",
            cert_path,
            format!("{e}; give a PEM certificate"),
        )
    })?;
    let private = parse_key("tls.key", key_path, key_bytes)?;
    let signing = provider()
        .key_provider
        .load_private_key(private)
        .map_err(|e| TlsError::file("tls.key", key_path, format!("is not a key rustls can use ({e}); use an RSA, ECDSA (P-256/P-384) or Ed25519 key")))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err(TlsError::file(
                "tls.key",
                key_path,
                format!(
                    "does not match the certificate in tls.cert = {}; give the private key the certificate was issued for",
                    cert_path.display()
                ),
            ));
        }
        Err(e) => {
            return Err(TlsError::file(
                "tls.cert",
                cert_path,
                format!("cannot be used ({e})"),
            ));
        }
    }
    let now = unix(now);
    if info.not_after < now {
        return Err(TlsError::file(
            "tls.cert",
            cert_path,
            format!(
                "the certificate (serial {}) expired at {}; renew it (cert-manager renews before expiry) or point tls.cert at a valid one",
                info.serial,
                info.not_after_rfc3339()
            ),
        ));
    }
    Ok(LoadedPair {
        certified: Arc::new(certified),
        info,
    })
}

fn load_client_ca(path: &Path, bytes: &[u8]) -> Result<Arc<RootCertStore>, TlsError> {
    let certs = parse_certs("tls.client_ca", path, bytes)?;
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| {
            TlsError::file(
                "tls.client_ca",
                path,
                format!("holds a certificate that cannot be a trust anchor ({e}); give the PEM of the CA that signs client certificates"),
            )
        })?;
    }
    Ok(Arc::new(roots))
}

/// Serves whichever pair is current.
#[derive(Debug)]
struct SwapResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl SwapResolver {
    fn get(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = key;
    }
}

impl ResolvesServerCert for SwapResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

fn server_config(
    cfg: &TlsConfig,
    resolver: Arc<SwapResolver>,
    client_roots: Option<Arc<RootCertStore>>,
) -> Result<ServerConfig, TlsError> {
    let versions: &[&'static rustls::SupportedProtocolVersion] = match cfg.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::Setup {
            key: "tls.min_version",
            problem: format!("not supported by the crypto provider ({e})"),
        })?;
    let builder = match client_roots {
        Some(roots) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| TlsError::Setup {
                    key: "tls.client_ca",
                    problem: format!("cannot verify client certificates with these roots ({e}); give the PEM of the CA that signs client certificates"),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Hashes of the files as last seen on disk (never the key itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    cert: [u8; 32],
    key: [u8; 32],
    client_ca: Option<[u8; 32]>,
}

#[derive(Debug)]
struct ReloadState {
    /// What is being served.
    active: Seen,
    /// The last content that failed, so a broken pair is reported once.
    failed: Option<Seen>,
}

struct Inner {
    cfg: TlsConfig,
    cert_path: PathBuf,
    key_path: PathBuf,
    resolver: Arc<SwapResolver>,
    config: RwLock<Arc<ServerConfig>>,
    info: RwLock<CertInfo>,
    state: Mutex<ReloadState>,
}

/// What one reload check did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The files are as they were.
    Unchanged,
    /// A new pair (or client CA) is now served.
    Reloaded(CertInfo),
    /// The files changed but the new material is broken; the old pair keeps serving.
    Failed(String),
}

/// The TLS side of the TCP listener: the current rustls config, swapped
/// when the files change on disk. Cheap to clone.
#[derive(Clone)]
pub struct ServerTls {
    /// Every clone shares the slot: [`ServerTls::reconfigure`] swaps what
    /// all of them (the listener, the reloader) use.
    slot: Arc<RwLock<Arc<Inner>>>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner();
        f.debug_struct("ServerTls")
            .field("cert", &inner.cert_path)
            .field("key", &inner.key_path)
            .field("client_ca", &inner.cfg.client_ca)
            .field("min_version", &inner.cfg.min_version)
            .finish()
    }
}

struct Material {
    seen: Seen,
    pair: LoadedPair,
    client_roots: Option<Arc<RootCertStore>>,
}

fn load_material(
    cfg: &TlsConfig,
    cert_path: &Path,
    key_path: &Path,
    now: SystemTime,
) -> Result<Material, TlsError> {
    let cert_bytes = read("tls.cert", cert_path)?;
    let key_bytes = read("tls.key", key_path)?;
    let pair = load_pair(cert_path, &cert_bytes, key_path, &key_bytes, now)?;
    let (client_roots, ca_digest) = match &cfg.client_ca {
        Some(path) => {
            let bytes = read("tls.client_ca", path)?;
            (Some(load_client_ca(path, &bytes)?), Some(digest(&bytes)))
        }
        None => (None, None),
    };
    Ok(Material {
        seen: Seen {
            cert: digest(&cert_bytes),
            key: digest(&key_bytes),
            client_ca: ca_digest,
        },
        pair,
        client_roots,
    })
}

fn required<'a>(
    path: &'a Option<PathBuf>,
    key: &'static str,
    fix: &'static str,
) -> Result<&'a Path, TlsError> {
    path.as_deref().ok_or(TlsError::Unset {
        key,
        why: "tls.enabled = true",
        fix,
    })
}

impl ServerTls {
    /// Loads and checks the certificate, key and client CA named by `cfg`
    /// and builds the rustls server config. Call only when `tls.enabled`.
    pub fn build(cfg: &TlsConfig) -> Result<ServerTls, TlsError> {
        Self::build_at(cfg, SystemTime::now())
    }

    /// [`ServerTls::build`] with an explicit clock (expiry is judged at `now`).
    pub fn build_at(cfg: &TlsConfig, now: SystemTime) -> Result<ServerTls, TlsError> {
        let cert_path = required(
            &cfg.cert,
            "tls.cert",
            "give the certificate's PEM path or set tls.enabled = false",
        )?
        .to_path_buf();
        let key_path = required(
            &cfg.key,
            "tls.key",
            "give the private key's PEM path or set tls.enabled = false",
        )?
        .to_path_buf();
        let material = load_material(cfg, &cert_path, &key_path, now)?;
        let resolver = Arc::new(SwapResolver {
            current: RwLock::new(material.pair.certified.clone()),
        });
        let config = server_config(cfg, resolver.clone(), material.client_roots)?;
        Ok(ServerTls {
            slot: Arc::new(RwLock::new(Arc::new(Inner {
                cfg: cfg.clone(),
                cert_path,
                key_path,
                resolver,
                config: RwLock::new(Arc::new(config)),
                info: RwLock::new(material.pair.info),
                state: Mutex::new(ReloadState {
                    active: material.seen,
                    failed: None,
                }),
            }))),
        })
    }

    fn inner(&self) -> Arc<Inner> {
        self.slot.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Switches every clone to the files and settings of a reloaded `tls.*`
    /// (certificate, key, client CA, minimum version). Everything is loaded
    /// and checked first: on error the old config keeps serving.
    pub fn reconfigure(&self, cfg: &TlsConfig) -> Result<(), TlsError> {
        let fresh = ServerTls::build(cfg)?.inner();
        *self.slot.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    /// The rustls server config in force now (ALPN `h2`, `http/1.1`).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.inner()
            .config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// An acceptor using the current config. Call it per accepted
    /// connection: a reload of `tls.client_ca` replaces the config.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.server_config())
    }

    /// Runs the TLS handshake on an accepted stream with the current config.
    /// Fails for plaintext clients, refused versions and (with mTLS) a
    /// missing or untrusted client certificate. No timeout is applied: wrap
    /// it in `tokio::time::timeout` to bound slow clients.
    pub async fn accept<IO>(&self, stream: IO) -> io::Result<tokio_rustls::server::TlsStream<IO>>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        self.acceptor().accept(stream).await
    }

    /// Facts about the certificate served now.
    pub fn current_cert(&self) -> CertInfo {
        self.inner()
            .info
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-reads the files; when their content changed and the new material
    /// is good, new handshakes use it. A broken change leaves the old pair in
    /// place. Logs what it did (`info` on reload, `warn` once per broken content).
    pub fn reload(&self) -> ReloadOutcome {
        self.reload_at(SystemTime::now())
    }

    /// [`ServerTls::reload`] with an explicit clock.
    pub fn reload_at(&self, now: SystemTime) -> ReloadOutcome {
        let current = self.inner();
        let inner = &*current;
        let mut state = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        // Hash first: an unchanged pair is the common case and costs two reads.
        let seen_now = (|| -> Result<Seen, TlsError> {
            Ok(Seen {
                cert: digest(&read("tls.cert", &inner.cert_path)?),
                key: digest(&read("tls.key", &inner.key_path)?),
                client_ca: match &inner.cfg.client_ca {
                    Some(p) => Some(digest(&read("tls.client_ca", p)?)),
                    None => None,
                },
            })
        })();
        let outcome = match seen_now {
            Ok(seen) if seen == state.active => {
                state.failed = None;
                return ReloadOutcome::Unchanged;
            }
            Ok(seen) if Some(seen) == state.failed => return ReloadOutcome::Unchanged,
            Ok(_) => {
                load_material(&inner.cfg, &inner.cert_path, &inner.key_path, now).and_then(|m| {
                    let ca_changed = m.seen.client_ca != state.active.client_ca;
                    if ca_changed {
                        // The client-certificate verifier lives in the ServerConfig: rebuild it.
                        let config = server_config(
                            &inner.cfg,
                            inner.resolver.clone(),
                            m.client_roots.clone(),
                        )?;
                        *inner.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
                    }
                    inner.resolver.set(m.pair.certified.clone());
                    *inner.info.write().unwrap_or_else(|e| e.into_inner()) = m.pair.info.clone();
                    state.active = m.seen;
                    state.failed = None;
                    Ok(m.pair.info)
                })
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(info) => {
                tracing::info!(
                    target: "oj::tls",
                    serial = %info.serial,
                    subject = %info.subject,
                    not_after = %info.not_after_rfc3339(),
                    "TLS certificate reloaded; new connections use it"
                );
                ReloadOutcome::Reloaded(info)
            }
            Err(e) => {
                let message = e.to_string();
                // Remember the broken content (when it could be read) so the
                // warning is not repeated every interval.
                let failed = (|| -> Option<Seen> {
                    Some(Seen {
                        cert: digest(&std::fs::read(&inner.cert_path).ok()?),
                        key: digest(&std::fs::read(&inner.key_path).ok()?),
                        client_ca: match &inner.cfg.client_ca {
                            Some(p) => Some(digest(&std::fs::read(p).ok()?)),
                            None => None,
                        },
                    })
                })();
                let first = failed.is_none() || failed != state.failed;
                state.failed = failed;
                if first {
                    let serving = self.current_cert();
                    tracing::warn!(
                        target: "oj::tls",
                        error = %message,
                        serving_serial = %serving.serial,
                        "the TLS files changed but cannot be used; still serving the previous certificate (fix the files; they are checked again every tls.reload_interval)"
                    );
                }
                ReloadOutcome::Failed(message)
            }
        }
    }

    /// Spawns a task that calls [`ServerTls::reload`] every `interval` until
    /// `shutdown` completes. Must be called inside a Tokio runtime.
    pub fn spawn_reloader<F>(&self, interval: Duration, shutdown: F) -> tokio::task::JoinHandle<()>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send,
    {
        let this = self.clone();
        let interval = interval.max(Duration::from_millis(10));
        tokio::spawn(async move {
            let mut ticker =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tokio::pin!(shutdown);
            loop {
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = ticker.tick() => {
                        let this = this.clone();
                        // File reads and key parsing are blocking work.
                        let _ = tokio::task::spawn_blocking(move || this.reload()).await;
                    }
                }
            }
        })
    }
}
