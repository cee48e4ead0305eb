//! The client side of TLS: the rustls config `oj` uses to reach a daemon
//! over `https://`, and advice for a handshake that failed.

use std::io;
use std::sync::Arc;

use oj_config::ClientConfig as ClientSettings;
use rustls::RootCertStore;

use super::{ALPN, TlsError, parse_certs, parse_key, provider, read};

/// The rustls client config for `https://` daemon URLs: trust roots from
/// `client.ca` (only those) when set, else the platform verifier; a client
/// certificate from `client.cert` + `client.key` for mTLS. ALPN offers `h2`
/// and `http/1.1`. Pass it to reqwest's `tls_backend_preconfigured`.
pub fn client_config(cfg: &ClientSettings) -> Result<rustls::ClientConfig, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Setup {
            key: "client.ca",
            problem: format!("TLS versions not supported by the crypto provider ({e})"),
        })?;
    let builder = match &cfg.ca {
        Some(path) => {
            let bytes = read("client.ca", path)?;
            let certs = parse_certs("client.ca", path, &bytes)?;
            let mut roots = RootCertStore::empty();
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    TlsError::file(
                        "client.ca",
                        path,
                        format!("holds a certificate that cannot be a trust anchor ({e}); give the PEM of the CA that signed the daemon's certificate"),
                    )
                })?;
            }
            builder.with_root_certificates(roots)
        }
        None => {
            let verifier = rustls_platform_verifier::Verifier::new(provider()).map_err(|e| TlsError::Setup {
                key: "client.ca",
                problem: format!(
                    "is unset and the system's trust store cannot be used ({e}); set client.ca to the PEM of the CA that signed the daemon's certificate"
                ),
            })?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
        }
    };
    let mut config = match (&cfg.cert, &cfg.key) {
        (Some(cert_path), Some(key_path)) => {
            let chain = parse_certs("client.cert", cert_path, &read("client.cert", cert_path)?)?;
            let key = parse_key("client.key", key_path, &read("client.key", key_path)?)?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                TlsError::file(
                    "client.key",
                    key_path,
                    format!(
                        "cannot be used with client.cert = {} ({e}); give the private key the client certificate was issued for",
                        cert_path.display()
                    ),
                )
            })?
        }
        (Some(_), None) => {
            return Err(TlsError::Unset {
                key: "client.key",
                why: "client.cert is set",
                fix: "set both client.cert and client.key for mutual TLS, or neither",
            });
        }
        (None, Some(_)) => {
            return Err(TlsError::Unset {
                key: "client.cert",
                why: "client.key is set",
                fix: "set both client.cert and client.key for mutual TLS, or neither",
            });
        }
        (None, None) => builder.with_no_client_auth(),
    };
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Turns a TLS failure seen by the client into advice: an untrusted server
/// certificate, a rejected client certificate, a plaintext server. `error`
/// is any error whose source chain may hold a `rustls::Error` or an
/// `io::Error` wrapping one (reqwest and hyper errors do).
pub fn explain_client_error(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(explain_rustls(r));
        }
        if let Some(io) = e.downcast_ref::<io::Error>()
            && let Some(r) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
        {
            return Some(explain_rustls(r));
        }
        cur = e.source();
    }
    None
}

fn explain_rustls(e: &rustls::Error) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    match e {
        E::InvalidCertificate(C::UnknownIssuer) | E::InvalidCertificate(C::BadSignature) => {
            format!(
                "the daemon's certificate is not trusted ({e}); set client.ca (OJ_CLIENT__CA) to the PEM of the CA that signed it"
            )
        }
        E::InvalidCertificate(C::NotValidForName)
        | E::InvalidCertificate(C::NotValidForNameContext { .. }) => {
            format!(
                "the daemon's certificate does not name this host ({e}); use a client.url host listed in the certificate's subject alternative names"
            )
        }
        E::InvalidCertificate(C::Expired) | E::InvalidCertificate(C::ExpiredContext { .. }) => {
            format!("the daemon's certificate has expired ({e}); renew it on the daemon side")
        }
        E::AlertReceived(A::CertificateRequired) | E::AlertReceived(A::HandshakeFailure) => {
            format!(
                "the daemon refused the TLS handshake ({e}); it may require a client certificate: set client.cert and client.key"
            )
        }
        E::AlertReceived(A::UnknownCA)
        | E::AlertReceived(A::BadCertificate)
        | E::AlertReceived(A::DecryptError) => format!(
            "the daemon rejected the client certificate ({e}); use client.cert/client.key signed by the CA in the daemon's tls.client_ca"
        ),
        E::AlertReceived(A::ProtocolVersion) => {
            format!(
                "the daemon refused the TLS version ({e}); it may require TLS 1.3 (tls.min_version)"
            )
        }
        E::InvalidMessage(_) => format!(
            "the server did not answer with TLS ({e}); is it serving plain HTTP? use an http:// URL"
        ),
        _ => format!("TLS handshake with the daemon failed ({e})"),
    }
}
