//! Why a connection to the daemon failed, in words a user can act on:
//! the error chain walked for rustls and I/O causes, a handshake probed
//! again for the alert, and advice on certificates, CAs and names.

use super::*;

/// Every message in an error's chain, joined (io::Error hides its inner
/// error from `source()`, so it is unwrapped by hand).
pub(super) fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    walk(e, &mut |err| {
        let s = err.to_string();
        if !s.is_empty() && !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    });
    parts.join(": ")
}

pub(super) fn walk<'a>(
    e: &'a (dyn StdError + 'static),
    f: &mut dyn FnMut(&'a (dyn StdError + 'static)),
) {
    let mut cur: Option<&'a (dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        f(err);
        if let Some(io) = err.downcast_ref::<io::Error>()
            && let Some(inner) = io.get_ref()
        {
            walk(inner, f);
            return;
        }
        cur = err.source();
    }
}

/// The innermost message of an error chain: the part that says what happened.
pub(super) fn root_cause(e: &(dyn StdError + 'static)) -> String {
    let mut last = e.to_string();
    walk(e, &mut |err| {
        let s = err.to_string();
        if !s.is_empty() {
            last = s;
        }
    });
    last
}

pub(super) fn find_rustls(e: &(dyn StdError + 'static)) -> Option<rustls::Error> {
    let mut found = None;
    walk(e, &mut |err| {
        if found.is_none()
            && let Some(r) = err.downcast_ref::<rustls::Error>()
        {
            found = Some(r.clone());
        }
    });
    found
}

pub(super) fn find_io_kind(e: &(dyn StdError + 'static)) -> Option<io::ErrorKind> {
    let mut found = None;
    walk(e, &mut |err| {
        if found.is_none()
            && let Some(io) = err.downcast_ref::<io::Error>()
        {
            found = Some(io.kind());
        }
    });
    found
}

/// Turns "no answer from the daemon" into one line: what failed, at which
/// address, and what to do.
pub fn classify_transport(
    endpoint: &Endpoint,
    e: &reqwest::Error,
    hints: &TransportHints,
) -> Failure {
    let addr = endpoint.display();
    if let Some(tls) = find_rustls(e).or_else(|| alert_in_text(&chain(e))) {
        return Failure::new(exit::UNREACHABLE, tls_advice(&addr, &tls, hints));
    }
    let kind = find_io_kind(e);
    let unreachable = |why: &str| {
        let hint = match endpoint {
            Endpoint::Unix(_) => {
                "start it with `oj daemon`, or set client.url / OJ_DAEMON_URL to reach a remote one"
            }
            _ => {
                "check that the daemon runs and listens there (listen.tcp), or fix client.url / OJ_DAEMON_URL"
            }
        };
        Failure::new(
            exit::UNREACHABLE,
            format!("cannot reach the oj daemon at {addr}: {why}; {hint}"),
        )
    };
    match kind {
        Some(io::ErrorKind::NotFound) => return unreachable("no socket there"),
        Some(io::ErrorKind::ConnectionRefused) => return unreachable("connection refused"),
        Some(io::ErrorKind::PermissionDenied) => {
            return Failure::new(
                exit::UNREACHABLE,
                format!(
                    "cannot reach the oj daemon at {addr}: permission denied; \
                     the socket belongs to another user (run oj as that user)"
                ),
            );
        }
        _ => {}
    }
    if e.is_timeout() {
        return unreachable("timed out");
    }
    if e.is_connect() {
        return unreachable(&root_cause(e));
    }
    // The connection was made but the exchange broke: e.g. plain HTTP sent
    // to a TLS port, a daemon that dropped a client certificate it refused
    // without an alert, or a daemon that went away mid-request.
    if let (Endpoint::Https(url), Some(tls)) = (endpoint, &hints.tls)
        && let Some(refusal) = probe_handshake(url, tls.clone())
    {
        return Failure::new(exit::UNREACHABLE, tls_advice(&addr, &refusal, hints));
    }
    let detail = root_cause(e);
    let hint = match endpoint {
        Endpoint::Http(_) => {
            "; if the daemon serves TLS (tls.enabled), use an https:// URL".to_string()
        }
        Endpoint::Https(_) => match &hints.client_cert {
            None => "; if the daemon requires client certificates (tls.client_ca), set \
                     client.cert and client.key (OJ_CLIENT__CERT, OJ_CLIENT__KEY) to a pair \
                     signed by that CA"
                .to_string(),
            Some(path) => format!(
                "; if the daemon refused this client's certificate, {}",
                client_cert_check(path)
            ),
        },
        Endpoint::Unix(_) => String::new(),
    };
    Failure::new(
        exit::UNREACHABLE,
        format!("lost the connection to the oj daemon at {addr}: {detail}{hint}"),
    )
}

/// How long the diagnostic handshake of [`probe_handshake`] may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// One more handshake, by hand, after a connection that broke without a
/// reason: a daemon that refuses a client certificate under TLS 1.3 does so
/// after the handshake, and its alert is often lost to a reset once the
/// request is on its way. Without a request in flight the alert arrives.
/// Returns the TLS error it ended with, `None` if it went through.
pub(super) fn probe_handshake(
    url: &str,
    config: Arc<rustls::ClientConfig>,
) -> Option<rustls::Error> {
    use std::io::Read;
    use std::net::{TcpStream, ToSocketAddrs};
    let url = reqwest::Url::parse(url).ok()?;
    let host = url.host_str()?.trim_matches(['[', ']']).to_string();
    let port = url.port_or_known_default()?;
    let name = rustls_pki_types::ServerName::try_from(host.clone()).ok()?;
    let addr = (host.as_str(), port).to_socket_addrs().ok()?.next()?;
    let mut tcp = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).ok()?;
    tcp.set_read_timeout(Some(PROBE_TIMEOUT)).ok()?;
    tcp.set_write_timeout(Some(PROBE_TIMEOUT)).ok()?;
    let mut conn = rustls::ClientConnection::new(config, name).ok()?;
    let tls_error = |e: io::Error| {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .cloned()
    };
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut tcp) {
            return tls_error(e);
        }
    }
    // TLS 1.3: the daemon's verdict on our certificate follows our Finished.
    let mut byte = [0u8; 1];
    // A byte (or a clean end) means it was accepted; only an error tells.
    rustls::Stream::new(&mut conn, &mut tcp)
        .read_exact(&mut byte)
        .err()
        .and_then(tls_error)
}

/// A TLS alert the peer sent, from its text: once the handshake is over (TLS
/// 1.3 refuses a client certificate after it), hyper hands the alert on
/// as an I/O error whose source is no longer a `rustls::Error`.
pub(super) fn alert_in_text(text: &str) -> Option<rustls::Error> {
    use rustls::AlertDescription as A;
    let name = text.split("received fatal alert: ").nth(1)?;
    let name: String = name
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    [
        A::CertificateRequired,
        A::HandshakeFailure,
        A::BadCertificate,
        A::UnsupportedCertificate,
        A::CertificateRevoked,
        A::CertificateExpired,
        A::CertificateUnknown,
        A::UnknownCA,
        A::AccessDenied,
        A::DecryptError,
    ]
    .into_iter()
    .find(|a| format!("{a:?}") == name)
    .map(rustls::Error::AlertReceived)
}

/// What is wrong with our own client certificate, as far as this machine
/// can tell (expired, not yet valid), else what to check about it.
pub(super) fn client_cert_check(path: &Path) -> String {
    let shown = path.display();
    let Some(info) = read_cert_info(path) else {
        return format!(
            "check that client.cert = {shown} is a valid PEM certificate signed by the daemon's \
             tls.client_ca"
        );
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    if info.not_after < now {
        format!(
            "client.cert = {shown} expired on {}: issue a new client certificate from the \
             daemon's tls.client_ca and point client.cert/client.key at it",
            info.not_after_rfc3339()
        )
    } else if info.not_before > now {
        format!(
            "client.cert = {shown} is not valid yet (from {}): check this machine's clock",
            rfc3339(info.not_before)
        )
    } else {
        format!(
            "check that client.cert = {shown} (subject {}) was issued by the CA in the daemon's \
             tls.client_ca; a certificate from another CA is refused",
            info.subject
        )
    }
}

pub(super) fn read_cert_info(path: &Path) -> Option<oj_adapters::tls::CertInfo> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let der = CertificateDer::pem_file_iter(path).ok()?.next()?.ok()?;
    oj_adapters::tls::cert_info(&der).ok()
}

pub(super) fn rfc3339(unix: i64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64))
        .to_string()
}

/// A short name for a certificate problem (rustls only has Debug names).
pub(super) fn cert_problem(c: &rustls::CertificateError) -> String {
    use rustls::CertificateError as C;
    match c {
        C::UnknownIssuer => "issued by an unknown CA".into(),
        C::BadSignature => "signature does not verify against the trusted CA".into(),
        C::Revoked => "revoked".into(),
        C::BadEncoding => "badly encoded".into(),
        other => {
            let s = rustls::Error::InvalidCertificate(other.clone()).to_string();
            s.trim_start_matches("invalid peer certificate: ")
                .to_string()
        }
    }
}

/// `DnsName("localhost")` (how rustls lists a certificate's names) → `localhost`.
pub(super) fn bare_name(presented: &str) -> &str {
    presented
        .split_once("(\"")
        .and_then(|(_, rest)| rest.strip_suffix("\")"))
        .unwrap_or(presented)
}

/// The daemon's certificate, as this client judged it.
pub(super) fn server_cert_advice(
    addr: &str,
    c: &rustls::CertificateError,
    hints: &TransportHints,
) -> String {
    use rustls::CertificateError as C;
    let renew = if hints.kubernetes {
        "renew the daemon's tls.cert (in a cluster: the TLS Secret, e.g. via cert-manager); it is \
         picked up without a restart"
    } else {
        "renew the daemon's tls.cert; it is picked up without a restart"
    };
    match c {
        C::NotValidForNameContext { presented, .. } if !presented.is_empty() => format!(
            "the daemon at {addr} presented a certificate that is not valid for that host name \
             (it holds {}); put one of those names in client.url, or reissue the certificate \
             with this name",
            presented
                .iter()
                .map(|p| bare_name(p))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        C::NotValidForName | C::NotValidForNameContext { .. } => format!(
            "the daemon at {addr} presented a certificate that is not valid for that host name; \
             put a name the certificate holds in client.url (or reissue the certificate with this \
             name)"
        ),
        C::ExpiredContext { not_after, .. } => format!(
            "the daemon at {addr} presented a certificate that expired on {}; {renew}",
            rfc3339(not_after.as_secs() as i64)
        ),
        C::Expired => format!("the daemon at {addr} presented an expired certificate; {renew}"),
        C::NotValidYet | C::NotValidYetContext { .. } => format!(
            "the daemon at {addr} presented a certificate that is not valid yet; check the clocks \
             of both machines"
        ),
        C::UnknownIssuer | C::BadSignature => match &hints.ca {
            Some(ca) => format!(
                "the daemon at {addr} presented a certificate this client does not trust ({}): \
                 client.ca = {} did not sign it; set client.ca to the CA that signed the \
                 daemon's tls.cert",
                cert_problem(c),
                ca.display()
            ),
            None => format!(
                "the daemon at {addr} presented a certificate this client does not trust ({}); \
                 set client.ca (OJ_CLIENT__CA) to the CA that signed it",
                cert_problem(c)
            ),
        },
        _ => format!(
            "the daemon at {addr} presented a certificate this client does not trust ({}); set \
             client.ca to the CA that signed it",
            cert_problem(c)
        ),
    }
}

/// Why the daemon refused the handshake, from the alert it sent: each
/// refusal of this client's certificate names the cause and the fix.
pub(super) fn tls_advice(addr: &str, e: &rustls::Error, hints: &TransportHints) -> String {
    use rustls::AlertDescription as A;
    let cert = hints.client_cert.as_deref();
    let alert = match e {
        rustls::Error::InvalidCertificate(c) => return server_cert_advice(addr, c, hints),
        rustls::Error::InvalidMessage(_) => {
            return format!(
                "the daemon at {addr} does not speak TLS ({e}); use an http:// URL, or enable \
                 tls on the daemon"
            );
        }
        rustls::Error::AlertReceived(a) => *a,
        other => return format!("TLS with the daemon at {addr} failed: {other}"),
    };
    match (alert, cert) {
        (A::CertificateRequired | A::HandshakeFailure, None) => format!(
            "the daemon at {addr} requires a client certificate (mTLS: its tls.client_ca is set) \
             and this client sent none; set client.cert and client.key (OJ_CLIENT__CERT, \
             OJ_CLIENT__KEY) to a pair signed by that CA"
        ),
        (A::CertificateExpired, Some(path)) => format!(
            "the daemon at {addr} refused this client's certificate as expired or not yet \
             valid; {}",
            client_cert_check(path)
        ),
        (A::UnknownCA | A::DecryptError, Some(path)) => format!(
            "the daemon at {addr} does not trust this client's certificate client.cert = {}: it \
             was not issued by the CA in the daemon's tls.client_ca; use a certificate from that \
             CA (or add its CA to tls.client_ca)",
            path.display()
        ),
        (
            A::BadCertificate
            | A::CertificateUnknown
            | A::UnsupportedCertificate
            | A::AccessDenied
            | A::CertificateRequired
            | A::HandshakeFailure
            | A::CertificateRevoked,
            Some(path),
        ) => format!(
            "the daemon at {addr} refused this client's certificate ({e}); {}",
            client_cert_check(path)
        ),
        (_, None)
            if matches!(
                alert,
                A::BadCertificate | A::UnknownCA | A::CertificateUnknown
            ) =>
        {
            format!(
                "the daemon at {addr} refused the TLS handshake ({e}); it requires a client \
                 certificate: set client.cert and client.key to a pair signed by its \
                 tls.client_ca"
            )
        }
        _ => format!("TLS with the daemon at {addr} failed: {e}"),
    }
}
