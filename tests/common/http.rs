//! Plain HTTP/1.1 `GET`s to a loopback port (the admin endpoints, `/metrics`,
//! an unencrypted TCP API), written by hand on a `TcpStream` so a test sees
//! exactly what the daemon answered and nothing waits longer than it says.
//! Requests over the Unix socket go through `curl_unix` in the parent
//! module; HTTPS goes through curl or the real client in the tests that
//! check TLS.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// What came back. `status` is 0 when nothing (or no HTTP) answered.
#[derive(Clone, Debug, Default)]
pub struct Reply {
    pub status: u16,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: String,
}

impl Reply {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` on 127.0.0.1:`port`, answered within 5 s.
pub fn get(port: u16, path: &str) -> Reply {
    Get::new(port, path).send()
}

/// A `GET` with headers and a deadline of its own.
pub struct Get {
    port: u16,
    path: String,
    headers: Vec<(String, String)>,
    within: Duration,
}

impl Get {
    pub fn new(port: u16, path: &str) -> Get {
        Get {
            port,
            path: path.to_string(),
            headers: Vec::new(),
            within: Duration::from_secs(5),
        }
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Get {
        self.header("Authorization", &format!("Bearer {token}"))
    }

    pub fn header(mut self, name: &str, value: &str) -> Get {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The whole exchange (connect, send, read) ends within `within`;
    /// what has not arrived by then is not waited for.
    pub fn within(mut self, within: Duration) -> Get {
        self.within = within;
        self
    }

    pub fn send(self) -> Reply {
        let deadline = Instant::now() + self.within;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, self.within) else {
            return Reply::default();
        };
        let mut request = format!("GET {} HTTP/1.1\r\nHost: 127.0.0.1\r\n", self.path);
        for (k, v) in &self.headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str("Connection: close\r\n\r\n");
        if stream.write_all(request.as_bytes()).is_err() {
            return Reply::default();
        }
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
                break;
            }
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
        parse(&raw)
    }
}

/// A response as read off the wire; a missing or cut head gives status 0.
fn parse(raw: &[u8]) -> Reply {
    let split = find(raw, b"\r\n\r\n");
    let head = String::from_utf8_lossy(split.map_or(raw, |at| &raw[..at]));
    let body = split.map_or(&[][..], |at| &raw[at + 4..]);
    let mut lines = head.lines();
    let status = lines
        .next()
        .filter(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut reply = Reply {
        status,
        headers,
        body: String::new(),
    };
    let chunked = reply
        .header("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"));
    reply.body = if chunked {
        String::from_utf8_lossy(&dechunk(body)).into_owned()
    } else {
        String::from_utf8_lossy(body).into_owned()
    };
    reply
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The data of a chunked body; stops at the last chunk or where it was cut.
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = find(rest, b"\r\n") {
        let size_line = String::from_utf8_lossy(&rest[..eol]);
        let size_hex = size_line.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_hex, 16) else {
            break;
        };
        let data = &rest[eol + 2..];
        if size == 0 || data.len() < size {
            out.extend_from_slice(&data[..size.min(data.len())]);
            break;
        }
        out.extend_from_slice(&data[..size]);
        rest = data[size..].strip_prefix(b"\r\n").unwrap_or(&data[size..]);
    }
    out
}
