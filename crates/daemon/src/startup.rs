//! What the daemon opens before it starts anything: the state (WAL and
//! snapshot) and its listeners, each failure typed for the binary's exit
//! code.

use super::*;

/// The listeners bound in the build phase, not yet serving.
pub(crate) struct Bound {
    pub(crate) unix: Option<(
        tokio::net::UnixListener,
        std::path::PathBuf,
        harden::SocketId,
    )>,
    pub(crate) tcp: Option<tokio::net::TcpListener>,
    pub(crate) admin: Option<(tokio::net::TcpListener, std::net::SocketAddr)>,
    pub(crate) tls: Option<oj_adapters::tls::ServerTls>,
    /// API listeners as URLs, for status and the ready line.
    pub(crate) urls: Vec<String>,
}

/// Opens the WAL and snapshot, logging what replay skipped.
pub(crate) fn open_state(state_dir: &Path) -> Result<(Storage, oj_core::State), StartError> {
    let (storage, state, replay) = tokio::task::block_in_place(|| Storage::open(state_dir))
        .map_err(|e| StartError::Runtime(format!("cannot load the daemon's state: {e}")))?;
    for problem in &replay.skipped {
        tracing::warn!(problem = %problem, "skipped a WAL record that does not fit");
    }
    if replay.torn_tail {
        tracing::warn!(
            "the last WAL record was torn (the daemon died while writing it); it was dropped"
        );
    }
    tracing::info!(
        jobs = state.jobs().count(),
        wal_records = replay.wal_records,
        snapshot_seq = replay.snapshot_seq,
        "state loaded"
    );
    Ok((storage, state))
}

/// Builds TLS and binds the Unix socket, TCP and admin listeners.
pub(crate) async fn bind_listeners(loaded: &Loaded) -> Result<Bound, StartError> {
    let cfg = &loaded.config;
    let tls = match (&cfg.listen.tcp, cfg.tls.enabled) {
        (Some(_), true) => Some(
            oj_adapters::tls::ServerTls::build(&cfg.tls)
                .map_err(|e| StartError::Config(e.to_string()))?,
        ),
        _ => None,
    };
    let mut urls = Vec::new();
    let unix = match cfg.unix_socket_path() {
        Some(path) if path.as_os_str().len() > MAX_SOCKET_PATH => {
            return Err(StartError::Config(format!(
                "the Unix socket path {} is {} bytes long, above the system's limit of {MAX_SOCKET_PATH}; set listen.unix_socket to a shorter absolute path or use a shorter daemon.state_dir",
                path.display(),
                path.as_os_str().len()
            )));
        }
        Some(path) => {
            let (l, id) = harden::claim_socket(&path).await.map_err(|e| match e {
                harden::SocketError::InUse { .. } => StartError::Locked(e.to_string()),
                harden::SocketError::Io { .. } => StartError::Runtime(e.to_string()),
            })?;
            urls.push(format!("unix://{}", path.display()));
            Some((l, path, id))
        }
        None => None,
    };
    let tcp = match &cfg.listen.tcp {
        Some(addr) => {
            let (l, local) = bind_tcp_for(loaded, "listen.tcp", addr).await?;
            urls.push(format!(
                "{}://{local}",
                if tls.is_some() { "https" } else { "http" }
            ));
            Some(l)
        }
        None => None,
    };
    let admin = match &cfg.admin.addr {
        Some(addr) => Some(bind_tcp_for(loaded, "admin.addr", addr).await?),
        None => None,
    };
    Ok(Bound {
        unix,
        tcp,
        admin,
        tls,
        urls,
    })
}

pub(crate) async fn bind_tcp_for(
    loaded: &Loaded,
    key: &str,
    addr: &str,
) -> Result<(tokio::net::TcpListener, std::net::SocketAddr), StartError> {
    listen::bind_tcp(addr).await.map_err(|e| {
        StartError::Runtime(format!(
            "cannot listen on {addr} ({key} {}): {e}; choose a free address",
            loaded.origin(key)
        ))
    })
}
