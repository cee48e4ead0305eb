//! Certificates for the end-to-end tests, made with rcgen: a CA that issues
//! server and client leaves (with a chosen serial, names or validity), and
//! the usual set of a CA plus a server certificate for localhost/127.0.0.1
//! written as PEM files, and a Kubernetes-style Secret volume to rotate
//! them in. (`e2e_tls` also makes certificates with the openssl recipe of
//! docs/tls.md; that one tests the docs and stays there.)
//!
//! It needs nothing but rcgen, so the TLS tests of `oj-adapters`
//! (`crates/adapters/tests/tls_server.rs`) use this file too, by path.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber, date_time_ymd,
};

/// A date as (year, month, day).
pub type Ymd = (i32, u8, u8);

/// A certificate authority: its certificate and what signs with its key.
pub struct Ca {
    /// The CA certificate, PEM.
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its private key, both PEM.
pub struct Leaf {
    pub cert: String,
    pub key: String,
}

impl Ca {
    /// A new self-signed CA whose common name is `name`.
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = p.self_signed(&key).expect("CA certificate");
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    /// A server certificate to be: for localhost and 127.0.0.1, `serverAuth`.
    pub fn server(&self) -> LeafBuilder<'_> {
        LeafBuilder {
            ca: self,
            names: vec!["localhost".to_string(), "127.0.0.1".to_string()],
            usage: ExtendedKeyUsagePurpose::ServerAuth,
            serial: None,
            validity: None,
        }
    }

    /// A client certificate to be: named `client`, `clientAuth`.
    pub fn client(&self) -> LeafBuilder<'_> {
        LeafBuilder {
            ca: self,
            names: vec!["client".to_string()],
            usage: ExtendedKeyUsagePurpose::ClientAuth,
            serial: None,
            validity: None,
        }
    }
}

/// A leaf certificate being described; [`LeafBuilder::issue`] signs it.
pub struct LeafBuilder<'a> {
    ca: &'a Ca,
    names: Vec<String>,
    usage: ExtendedKeyUsagePurpose,
    serial: Option<u64>,
    validity: Option<(Ymd, Ymd)>,
}

impl LeafBuilder<'_> {
    /// The subject alternative names (instead of the default ones).
    pub fn names(mut self, names: &[&str]) -> Self {
        self.names = names.iter().map(|n| n.to_string()).collect();
        self
    }

    pub fn serial(mut self, serial: u64) -> Self {
        self.serial = Some(serial);
        self
    }

    /// Valid from `not_before` to `not_after` (both at 00:00 UTC) instead
    /// of rcgen's default.
    pub fn valid(mut self, not_before: Ymd, not_after: Ymd) -> Self {
        self.validity = Some((not_before, not_after));
        self
    }

    /// Valid until `(y, m, d)`, from January 1st of the year before.
    pub fn until(self, (y, m, d): Ymd) -> Self {
        self.valid((y - 1, 1, 1), (y, m, d))
    }

    /// Valid only in 2020: expired.
    pub fn expired(self) -> Self {
        self.valid((2020, 1, 1), (2020, 12, 31))
    }

    /// Signs the leaf with the CA.
    pub fn issue(self) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let mut p = CertificateParams::new(self.names).expect("leaf params");
        p.extended_key_usages = vec![self.usage];
        if let Some(serial) = self.serial {
            p.serial_number = Some(SerialNumber::from(serial));
        }
        if let Some(((y0, m0, d0), (y1, m1, d1))) = self.validity {
            p.not_before = date_time_ymd(y0, m0, d0);
            p.not_after = date_time_ymd(y1, m1, d1);
        }
        let cert = p
            .signed_by(&key, &self.ca.issuer)
            .expect("leaf certificate");
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// A CA and a server certificate for localhost/127.0.0.1, as PEM files.
pub struct ServerPki {
    /// `ca.crt`: the CA certificate, for clients to trust.
    pub ca: PathBuf,
    /// `tls.crt`: the server certificate.
    pub cert: PathBuf,
    /// `tls.key`: its private key.
    pub key: PathBuf,
}

impl ServerPki {
    /// A new CA and server certificate, written to `dir` (created).
    pub fn write(dir: &Path) -> ServerPki {
        let ca = Ca::new("oj e2e CA");
        ServerPki::write_with(dir, &ca, &ca.server().issue())
    }

    /// `ca` and `server` written to `dir` (created).
    pub fn write_with(dir: &Path, ca: &Ca, server: &Leaf) -> ServerPki {
        std::fs::create_dir_all(dir).expect("create the pki dir");
        let put = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write a pki file");
            path
        };
        ServerPki {
            ca: put("ca.crt", &ca.pem),
            cert: put("tls.crt", &server.cert),
            key: put("tls.key", &server.key),
        }
    }
}

/// A Secret volume laid out the way the kubelet does: `tls.crt` and
/// `tls.key` are links into `..data`, itself a link to a timestamped
/// directory that [`SecretVolume::swap`] replaces atomically.
pub struct SecretVolume {
    pub root: PathBuf,
    n: u32,
}

impl SecretVolume {
    /// The volume at `root` (created) holding `leaf`.
    pub fn new(root: &Path, leaf: &Leaf) -> SecretVolume {
        std::fs::create_dir_all(root).expect("create the volume dir");
        let mut v = SecretVolume {
            root: root.to_path_buf(),
            n: 0,
        };
        v.swap(&leaf.cert, &leaf.key);
        std::os::unix::fs::symlink("..data/tls.crt", root.join("tls.crt")).expect("link tls.crt");
        std::os::unix::fs::symlink("..data/tls.key", root.join("tls.key")).expect("link tls.key");
        v
    }

    /// `<root>/tls.crt`.
    pub fn cert(&self) -> PathBuf {
        self.root.join("tls.crt")
    }

    /// `<root>/tls.key`.
    pub fn key(&self) -> PathBuf {
        self.root.join("tls.key")
    }

    /// Writes a new timestamped directory and repoints `..data` to it.
    pub fn swap(&mut self, cert: &str, key: &str) {
        self.n += 1;
        let name = format!("..2026_11_26_09_00_{:02}.{}", self.n, self.n);
        let dir = self.root.join(&name);
        std::fs::create_dir(&dir).expect("create the data dir");
        std::fs::write(dir.join("tls.crt"), cert).expect("write tls.crt");
        std::fs::write(dir.join("tls.key"), key).expect("write tls.key");
        let tmp = self.root.join("..data_tmp");
        std::os::unix::fs::symlink(&name, &tmp).expect("link ..data_tmp");
        std::fs::rename(&tmp, self.root.join("..data")).expect("repoint ..data");
    }
}
