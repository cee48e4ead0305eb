//! Shared harness for the end-to-end tests: an isolated environment (HOME,
//! XDG dirs, state dir) and a real `oj daemon` process driven over its Unix
//! socket. Every wait is bounded.
#![allow(dead_code)]

pub mod http;
pub mod pki;
pub mod private_bus;
pub mod webhook;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The `oj` binary under test.
pub fn oj_bin() -> &'static str {
    env!("CARGO_BIN_EXE_oj")
}

/// Polls `cond` every 25 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// An isolated environment for one test.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    /// Extra environment variables for every command.
    pub vars: Vec<(String, String)>,
}

impl TestEnv {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("oj-e2e-")
            .tempdir()
            .expect("tempdir");
        for sub in ["home", "config", "state", "runtime"] {
            fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        TestEnv {
            dir,
            vars: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `daemon.state_dir` under the desktop profile.
    pub fn state_dir(&self) -> PathBuf {
        self.path().join("state/oj")
    }

    pub fn socket(&self) -> PathBuf {
        self.state_dir().join("daemon.sock")
    }

    /// Writes the default config file (`$XDG_CONFIG_HOME/oj/config.toml`).
    pub fn write_config(&self, toml: &str) -> PathBuf {
        let p = self.path().join("config/oj/config.toml");
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, toml).expect("write config");
        p
    }

    /// Writes a file under the test dir and returns its path.
    pub fn write(&self, rel: &str, contents: &str) -> PathBuf {
        let p = self.path().join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::write(&p, contents).expect("write");
        p
    }

    pub fn set_var(&mut self, k: &str, v: &str) {
        self.vars.push((k.into(), v.into()));
    }

    /// The `oj` binary with a cleared environment: only PATH, HOME, XDG_*
    /// of this test env and `vars`.
    pub fn oj(&self) -> Command {
        let mut cmd = Command::new(oj_bin());
        cmd.env_clear()
            .env(
                "PATH",
                std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
            )
            .env("HOME", self.path().join("home"))
            .env("XDG_CONFIG_HOME", self.path().join("config"))
            .env("XDG_STATE_HOME", self.path().join("state"))
            .env("XDG_RUNTIME_DIR", self.path().join("runtime"))
            .current_dir(self.path());
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs `oj ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        let out = self
            .oj()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run oj");
        Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Starts `oj daemon ARGS` and waits until it answers on its socket.
    pub fn start_daemon(&self, args: &[&str]) -> Daemon {
        let mut cmd = self.oj();
        cmd.arg("daemon").args(args);
        let mut d = Daemon::spawn_raw(cmd, self.path(), self.socket());
        let ready = wait_until(Duration::from_secs(15), || {
            d.exited().is_some() || d.get("/v1/status").0 == 200
        });
        assert!(
            ready && d.exited().is_none(),
            "daemon did not become ready\nstdout:\n{}\nstderr:\n{}",
            d.stdout(),
            d.stderr()
        );
        d
    }

    /// Starts `oj daemon` (its config opens a TCP listener on `port`) and
    /// waits until that port accepts connections too.
    pub fn start_daemon_on_tcp(&self, port: u16) -> Daemon {
        let mut d = self.start_daemon(&[]);
        let up = wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(
            up && d.exited().is_none(),
            "the TCP listener on 127.0.0.1:{port} never came up\nstderr:\n{}",
            d.stderr()
        );
        d
    }
}

/// A finished command.
#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// A running `oj daemon`.
pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    status: Option<ExitStatus>,
}

static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Daemon {
    /// Spawns `cmd` with stdout/stderr captured to files in `dir`.
    pub fn spawn_raw(mut cmd: Command, dir: &Path, socket: PathBuf) -> Daemon {
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let stdout_path = dir.join(format!("daemon-{n}.stdout"));
        let stderr_path = dir.join(format!("daemon-{n}.stderr"));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout_path).expect("stdout file"))
            .stderr(fs::File::create(&stderr_path).expect("stderr file"))
            .spawn()
            .expect("spawn oj daemon");
        Daemon {
            child,
            socket,
            stdout_path,
            stderr_path,
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status();
    }

    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        self.status = self.child.wait().ok();
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_until(timeout, || self.exited().is_some());
        self.exited()
    }

    /// One HTTP request over the Unix socket: (status, JSON body or
    /// `{"text": body}` when it is not JSON). Status 0 = no connection.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        curl_unix(&self.socket, method, path, body)
    }

    pub fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.request("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        self.request("POST", path, Some(body))
    }

    /// Submits a job spec and returns its id.
    pub fn submit(&self, spec: &serde_json::Value) -> String {
        let (status, job) = self.post("/v1/jobs", spec);
        assert_eq!(status, 201, "submit failed: {job}");
        job["id"].as_str().expect("job id").to_string()
    }

    /// Waits until job `id` is in one of `states`; returns the job.
    pub fn wait_job(&self, id: &str, states: &[&str], timeout: Duration) -> serde_json::Value {
        let mut last = serde_json::Value::Null;
        let ok = wait_until(timeout, || {
            let (s, job) = self.get(&format!("/v1/jobs/{id}"));
            let done = s == 200 && states.iter().any(|st| job["state"] == *st);
            last = job;
            done
        });
        assert!(
            ok,
            "job {id} never reached {states:?}; last: {last}\nstderr:\n{}",
            self.stderr()
        );
        last
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// HTTP over a Unix socket with curl (installed on the machine).
pub fn curl_unix(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "-m",
        "10",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "-X",
        method,
        "--unix-socket",
    ])
    .arg(socket)
    .arg(format!("http://localhost{path}"));
    if let Some(b) = body {
        cmd.args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &b.to_string(),
        ]);
    }
    let out = match cmd.output() {
        Ok(o) => o,
        Err(_) => return (0, serde_json::Value::Null),
    };
    parse_curl(&String::from_utf8_lossy(&out.stdout))
}

/// Splits curl's `-w "\n%{http_code}"` output into status and body.
pub fn parse_curl(text: &str) -> (u16, serde_json::Value) {
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", text));
    let status = code.trim().parse().unwrap_or(0);
    let value = serde_json::from_str(body).unwrap_or_else(|_| serde_json::json!({ "text": body }));
    (status, value)
}

/// A tmpfs mounted on a directory for the test's lifetime (a small, full
/// disk on demand). Needs root: without it the test prints why and skips
/// only the case that needs it.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        fs::create_dir_all(dir).expect("mkdir");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs(dir.to_path_buf())),
            Ok(o) => {
                eprintln!(
                    "SKIP: cannot mount a tmpfs on {} ({}); the full-disk case needs root",
                    dir.display(),
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIP: cannot run mount ({e}); the full-disk case needs root");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `dir` until a write fails; returns the
/// filler file (remove it to give the space back).
pub fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = fs::File::create(&path).expect("filler");
    for chunk in [64 * 1024, 4096, 512, 1] {
        let buf = vec![0u8; chunk];
        while f.write_all(&buf).is_ok() && f.sync_data().is_ok() {}
    }
    path
}
