//! End to end: every command in README.md and docs/*.md is run, as
//! written, against the real `oj` binary in a clean `HOME`, and what it
//! prints is compared with the sample output the doc shows.
//!
//! The rules the docs follow (this test enforces them):
//! * Commands are in ```` ```console ```` blocks, one per `$ ` line; lines
//!   that follow (and do not continue the command with `\` or a heredoc) are
//!   its sample output, up to the next `$ ` line. A `sh`/`bash`/`shell` block
//!   is an error: every command block is either run or says why not.
//! * Sample output is compared with what the command printed (stdout and
//!   stderr as one stream, in order) the trycmd/snapbox way: `[..]` in a
//!   line matches any text within that line (ids, times, durations), a line
//!   that is only `...` matches any number of whole lines, trailing blanks
//!   are ignored, so is the width of a gap between words (table columns
//!   may be wider or narrower), and the sandbox's home directory is shown as
//!   `/home/alice` (its work dir is `/home/alice/project`). A command with
//!   no sample lines under it is not compared, so a block shows only the
//!   output worth showing.
//! * ```` ```console not-run ```` marks a block that cannot run here (a
//!   cluster, a remote daemon, a package manager); the prose around it says
//!   why. The test lists them.
//! * ```` ```console needs-daemon ```` runs the block with a daemon already
//!   started in the background, as the README's set-up command leaves one
//!   running in another terminal.
//! * A command that is exactly `oj daemon` (flags allowed) is that "other
//!   terminal": it is started in the background on a pseudo-terminal and
//!   waited for until `oj status` answers; its sample output (the warnings
//!   and the ready line it prints on a terminal) is compared with what it
//!   printed by then. The doc stops it with `oj daemon stop`.
//! * A command expected to fail says so at the end of its line:
//!   `$ oj config check   # → exit 78`. Any other non-zero exit fails the test.
//!
//! Each doc file runs in its own sandbox (HOME, XDG dirs, a work dir that
//! is the current directory), with `oj` first on PATH; blocks of one file
//! share it, in order. Every command is bounded in time.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::wait_until;

/// One fenced block of a markdown file.
#[derive(Debug)]
struct Block {
    file: String,
    line: usize,
    lang: String,
    flags: BTreeSet<String>,
    text: String,
    /// How far the fence is indented (a block inside a list item).
    indent: usize,
}

fn blocks(file: &str, markdown: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in markdown.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        match (&mut open, fence) {
            (None, true) => {
                let info = line.trim_start().trim_start_matches('`');
                let mut words = info.split_whitespace();
                open = Some(Block {
                    file: file.to_string(),
                    line: i + 1,
                    lang: words.next().unwrap_or("").to_string(),
                    flags: words.map(str::to_string).collect(),
                    text: String::new(),
                    indent: line.len() - line.trim_start().len(),
                });
            }
            (Some(_), true) => out.extend(open.take()),
            (Some(b), false) => {
                let indent = line.len() - line.trim_start_matches(' ').len();
                b.text.push_str(&line[indent.min(b.indent)..]);
                b.text.push('\n');
            }
            (None, false) => {}
        }
    }
    out
}

/// One command of a console block, with the exit status it expects and
/// the sample output shown under it.
#[derive(Debug, Clone)]
struct Cmd {
    text: String,
    expect: i32,
    /// The lines under the command up to the next `$ ` line (may be empty).
    output: String,
}

/// The `$ ` commands of a console block, with their continuation lines
/// (`\` at the end, heredoc bodies) and the sample output under each.
fn commands(block: &str) -> Vec<Cmd> {
    let mut out: Vec<Cmd> = Vec::new();
    let mut lines = block.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(first) = line.strip_prefix("$ ") else {
            continue;
        };
        let mut text = first.to_string();
        let mut last = first.to_string();
        let heredoc = heredoc_word(first);
        if let Some(word) = heredoc {
            for l in lines.by_ref() {
                text.push('\n');
                text.push_str(l);
                if l.trim() == word {
                    break;
                }
            }
        } else {
            while last.trim_end().ends_with('\\') {
                let Some(l) = lines.next() else { break };
                text.push('\n');
                text.push_str(l);
                last = l.to_string();
            }
        }
        let expect = first
            .split("# → exit ")
            .nth(1)
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        let mut output = String::new();
        while let Some(l) = lines.next_if(|l| !l.starts_with("$ ")) {
            output.push_str(l);
            output.push('\n');
        }
        out.push(Cmd {
            text,
            expect,
            output,
        });
    }
    out
}

/// `cat > f <<'TOML'` → `TOML`.
fn heredoc_word(cmd: &str) -> Option<String> {
    let (_, rest) = cmd.split_once("<<")?;
    let rest = rest.trim_start_matches('-').trim_start();
    let word: String = rest
        .trim_start_matches(['\'', '"'])
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!word.is_empty()).then_some(word)
}

/// Whether a command is `oj daemon` itself (to be run "in another terminal").
fn is_foreground_daemon(cmd: &str) -> bool {
    let words: Vec<&str> = cmd
        .split('#')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    words.first() == Some(&"oj")
        && words.get(1) == Some(&"daemon")
        && words.get(2).is_none_or(|w| w.starts_with("--"))
        && !words.contains(&"&")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The markdown files users read.
fn doc_files() -> Vec<PathBuf> {
    let root = repo_root();
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .expect("docs/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// A clean machine for one doc file.
struct Sandbox {
    dir: tempfile::TempDir,
    bin: PathBuf,
    daemon: Option<Child>,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("oj-docs-")
            .tempdir()
            .expect("tempdir");
        for sub in ["home/project", "bin"] {
            fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        let bin = dir.path().join("bin");
        std::os::unix::fs::symlink(common::oj_bin(), bin.join("oj")).expect("symlink oj");
        Sandbox {
            dir,
            bin,
            daemon: None,
        }
    }

    fn command(&self, program: &str) -> Command {
        let p = self.dir.path();
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env(
                "PATH",
                format!("{}:/usr/local/bin:/usr/bin:/bin", self.bin.display()),
            )
            // A fresh login: HOME and nothing else, so the docs' ~/.config
            // and ~/.local/state paths are the real ones.
            .env("HOME", p.join("home"))
            .env("USER", "docs")
            .env("TERM", "dumb")
            .current_dir(p.join("home/project"))
            .stdin(Stdio::null());
        cmd
    }

    fn status_answers(&self) -> bool {
        self.command("oj")
            .arg("status")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// `oj daemon ARGS` "in another terminal": in the background on a
    /// pseudo-terminal (`script`), until `oj status` answers; then what it
    /// printed is compared with the doc's sample output.
    fn start_daemon(&mut self, cmd: &Cmd, at: &str) {
        self.reap();
        let log = self.dir.path().join("daemon.tty");
        let pty = has_script();
        let child = if pty {
            self.command("script")
                .args(["--quiet", "--flush", "--return", "--command"])
                .arg(format!("exec {}", cmd.text))
                .arg("/dev/null")
                .stdout(fs::File::create(&log).expect("log"))
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn oj daemon under script(1)")
        } else {
            self.command("sh")
                .arg("-c")
                .arg(format!("exec {}", cmd.text))
                .stdout(Stdio::null())
                .stderr(fs::File::create(&log).expect("log"))
                .spawn()
                .expect("spawn oj daemon")
        };
        self.daemon = Some(child);
        let up = wait_until(Duration::from_secs(15), || {
            self.daemon_exited() || self.status_answers()
        });
        let printed = || fs::read_to_string(&log).unwrap_or_default();
        assert!(
            up && !self.daemon_exited(),
            "{at}: `{}` did not come up:\n{}",
            cmd.text,
            printed()
        );
        if cmd.output.trim().is_empty() || !pty {
            // Without script(1) there is no terminal, hence no ready line.
            return;
        }
        // The ready line follows the first answer closely.
        wait_until(Duration::from_secs(5), || {
            self.output_differs(&printed(), &cmd.output).is_none()
        });
        if let Some(diff) = self.output_differs(&printed(), &cmd.output) {
            panic!(
                "{at}: `{}` printed something else than the doc shows \
                 ([..] matches within a line, ... whole lines):\n{diff}",
                cmd.text
            );
        }
    }

    /// Compares what a command printed with a doc's sample output; `None`
    /// when they match, else the difference.
    fn output_differs(&self, actual: &str, expected: &str) -> Option<String> {
        output_differs(&self.dir.path().join("home"), actual, expected)
    }

    fn daemon_exited(&mut self) -> bool {
        match &mut self.daemon {
            Some(c) => c.try_wait().ok().flatten().is_some(),
            None => true,
        }
    }

    fn reap(&mut self) {
        if self.daemon_exited() {
            self.daemon = None;
        }
    }

    /// Runs commands in one bash, each bounded; returns each exit status
    /// and what each printed (stdout and stderr as one stream).
    fn run(&self, cmds: &[Cmd], at: &str) -> Vec<(Cmd, i32, String)> {
        let dir = self.dir.path();
        let rc_file = dir.join("rc");
        let out_dir = dir.join("out");
        let _ = fs::remove_dir_all(&out_dir);
        fs::create_dir_all(&out_dir).expect("mkdir out");
        let mut script = String::from("exec 3>\"$DOCS_RC_FILE\"\n");
        for (i, c) in cmds.iter().enumerate() {
            script.push_str(&format!(
                "{{\n{}\n}} </dev/null >\"$DOCS_OUT_DIR/{i}\" 2>&1\necho \"{i} $?\" >&3\n",
                c.text
            ));
        }
        let path = dir.join("block.sh");
        fs::write(&path, script).expect("write script");
        let out = self
            .command("timeout")
            .arg("120")
            .arg("bash")
            .arg(&path)
            .env("DOCS_RC_FILE", &rc_file)
            .env("DOCS_OUT_DIR", &out_dir)
            .output()
            .expect("run bash");
        let printed =
            |i: usize| fs::read_to_string(out_dir.join(i.to_string())).unwrap_or_default();
        let mut transcript = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for (i, c) in cmds.iter().enumerate() {
            transcript.push_str(&format!("$ {}\n{}", c.text, printed(i)));
        }
        let rcs = fs::read_to_string(&rc_file).unwrap_or_default();
        let mut results = Vec::new();
        for (i, c) in cmds.iter().enumerate() {
            let rc = rcs
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{i} ")))
                .and_then(|r| r.trim().parse().ok())
                .unwrap_or_else(|| {
                    panic!("{at}: the block stopped before `{}`:\n{transcript}", c.text)
                });
            results.push((c.clone(), rc, printed(i)));
        }
        results
    }
}

/// Whether script(1) (util-linux) is here to give `oj daemon` a terminal.
fn has_script() -> bool {
    let ok = Command::new("script")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("script(1) is missing: the output of `oj daemon` in the docs is not compared");
    }
    ok
}

/// Compares what a command printed (in a sandbox whose home is `home`) with
/// a doc's sample output, with snapbox's wildcards; `None` when they match,
/// else the difference.
fn output_differs(home: &Path, actual: &str, expected: &str) -> Option<String> {
    let actual = tidy(&actual.replace(&*home.to_string_lossy(), "/home/alice"));
    snapbox::Assert::new()
        .normalize_paths(false)
        .try_eq(
            Some(&"printed"),
            snapbox::Data::text(actual),
            snapbox::Data::text(tidy(expected)),
        )
        .err()
        .map(|e| e.to_string())
}

/// Output as the docs write it: no trailing blanks on a line, no blank
/// lines at the end, and a run of spaces inside a line (the gap between
/// table columns) counted as one, so a column that is wider or narrower
/// here (a longer path, another id) does not matter. Indentation counts.
fn tidy(text: &str) -> String {
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let l = l.trim_end();
            let body = l.trim_start_matches(' ');
            let mut out = l[..l.len() - body.len()].to_string();
            let mut gap = false;
            for c in body.chars() {
                if c == ' ' {
                    gap = true;
                    continue;
                }
                if gap {
                    out.push(' ');
                    gap = false;
                }
                out.push(c);
            }
            out
        })
        .collect();
    let mut out = lines.join("\n");
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.reap();
        if let Some(mut child) = self.daemon.take() {
            // script(1) is the child; the daemon under it is asked to stop.
            let _ = self
                .command("timeout")
                .args(["30", "oj", "daemon", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs the console blocks of one file; returns the blocks it skipped and
/// every sample output that differs from what its command printed.
fn run_file(path: &Path) -> (Vec<String>, Vec<String>) {
    let name = path
        .strip_prefix(repo_root())
        .unwrap_or(path)
        .display()
        .to_string();
    let text = fs::read_to_string(path).expect("read doc");
    let mut sandbox = Sandbox::new();
    let mut skipped = Vec::new();
    let mut failures = Vec::new();
    for block in blocks(&name, &text) {
        let at = format!("{}:{}", block.file, block.line);
        assert!(
            !matches!(block.lang.as_str(), "sh" | "bash" | "shell" | "zsh"),
            "{at}: a ```{} block; write commands as ```console (`$ ` lines) so this test runs \
             them, or ```console not-run with the reason in the text",
            block.lang
        );
        if block.lang != "console" {
            assert!(
                !block.text.lines().any(|l| l.starts_with("$ ")),
                "{at}: `$ ` commands in a ```{} block; make it ```console (or console not-run)",
                block.lang
            );
            continue;
        }
        let cmds = commands(&block.text);
        assert!(
            !cmds.is_empty(),
            "{at}: a console block without `$ ` commands"
        );
        if block.flags.contains("not-run") {
            skipped.push(format!(
                "{at}: {}",
                cmds[0].text.lines().next().unwrap_or("")
            ));
            continue;
        }
        sandbox.reap();
        if block.flags.contains("needs-daemon") && sandbox.daemon.is_none() {
            let cmd = Cmd {
                text: "oj daemon".into(),
                expect: 0,
                output: String::new(),
            };
            sandbox.start_daemon(&cmd, &at);
        }
        // Split at `oj daemon` lines: those run "in another terminal".
        let mut batch: Vec<Cmd> = Vec::new();
        let mut segments: Vec<(Vec<Cmd>, Option<Cmd>)> = Vec::new();
        for c in cmds {
            if is_foreground_daemon(&c.text) {
                segments.push((std::mem::take(&mut batch), Some(c)));
            } else {
                batch.push(c);
            }
        }
        segments.push((batch, None));
        for (cmds, daemon) in segments {
            for (cmd, rc, printed) in sandbox.run(&cmds, &at) {
                assert_eq!(
                    rc, cmd.expect,
                    "{at}: `{}` exited {rc}, the doc expects {}:\n{printed}",
                    cmd.text, cmd.expect
                );
                if cmd.output.trim().is_empty() {
                    continue;
                }
                if let Some(diff) = sandbox.output_differs(&printed, &cmd.output) {
                    failures.push(format!(
                        "{at}: `{}` printed something else than the doc shows \
                         ([..] matches within a line, ... whole lines):\n{diff}",
                        cmd.text
                    ));
                }
            }
            if let Some(d) = daemon {
                sandbox.start_daemon(&d, &at);
            }
        }
    }
    // The Quick start works in a scratch directory: following it leaves
    // nothing (an .oj/ with a runbook) in the checkout it was read from.
    let leftover = sandbox.dir.path().join("home/project/.oj");
    assert!(
        name != "README.md" || !leftover.exists(),
        "README.md: following the Quick start left {} in the directory it was started from; \
         run it in a scratch directory",
        leftover.display()
    );
    (skipped, failures)
}

#[test]
fn console_blocks_parse_into_commands() {
    let cmds = commands(
        "$ mkdir -p x && cat > x/a.toml <<'TOML'\n[a]\nb = 1\nTOML\n$ oj status\noutput line\n\
         $ curl -s \\\n  http://x\n$ oj config check   # → exit 78\n",
    );
    assert_eq!(cmds.len(), 4, "{cmds:?}");
    assert_eq!(cmds[0].output, "");
    assert_eq!(cmds[1].output, "output line\n");
    assert_eq!(cmds[2].output, "");
    assert!(cmds[0].text.ends_with("TOML"), "{cmds:?}");
    assert_eq!(cmds[1].text, "oj status");
    assert!(cmds[2].text.contains("http://x"));
    assert_eq!(cmds[3].expect, 78);
    assert!(is_foreground_daemon("oj daemon"));
    assert!(is_foreground_daemon("oj daemon --set log.stdout=true"));
    assert!(!is_foreground_daemon("oj daemon stop"));
    assert!(!is_foreground_daemon("oj daemon &"));
}

#[test]
fn sample_output_is_compared_with_wildcards_for_what_varies() {
    let home = Path::new("/tmp/oj-docs-x1/home");
    let printed = "0mxdjgl2y000\n==> echo <==\nhello\n\
                   oj: job 0mxdjgl2y000 (echo) done after 19ms\n\
                   ID            NAME\n/tmp/oj-docs-x1/home/.local/state/oj/daemon.sock\n";
    let doc = "[..]\n==> echo <==\n...\noj: job [..] (echo) done after [..]\n\
               ID  NAME\n/home/alice/.local/state/oj/daemon.sock\n";
    assert_eq!(output_differs(home, printed, doc), None);
    // Drift is caught: a changed word, a missing line, an extra line.
    let drifted = doc.replace("done after", "finished after");
    assert!(output_differs(home, printed, &drifted).is_some());
    assert!(output_differs(home, printed, "[..]\n==> echo <==\n").is_some());
    assert!(output_differs(home, &format!("{printed}oj: one more\n"), doc).is_some());
}

#[test]
fn every_command_in_the_docs_runs_as_written() {
    let mut skipped = Vec::new();
    let mut failures = Vec::new();
    for file in doc_files() {
        let (s, f) = run_file(&file);
        skipped.extend(s);
        failures.extend(f);
    }
    eprintln!("console blocks not run (marked not-run):");
    for s in &skipped {
        eprintln!("  {s}");
    }
    assert!(
        failures.is_empty(),
        "{} sample output(s) differ from the real output:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
