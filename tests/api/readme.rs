//! README.md's console blocks, run as written and in order, the way a newcomer would: in a
//! scratch directory beside a real `writ serve --dev`, with the built `writ` on PATH.
//!
//! A block's `$ ` lines are commands (a trailing `\` continues one); the lines after a command,
//! up to the next, are what it prints. Each command must exit 0, or 1 when its output starts
//! with `refused`, `denied` or `error:`; each output line shown must appear, in order, in what
//! it printed (stdout and stderr). In the comparison, every word holding a digit (ids, times,
//! ports, keys) stands for any such word, `…` stands for anything, and a line that is only `…`
//! skips lines. A command ending in `&` runs in the background until the end, and the next
//! command starts once its output has appeared. After `writ keys rotate` the test gives the
//! broker the second the README says it takes to pick up the new key.
//!
//! The broker listens on a free port; the README's `127.0.0.1:8080` (the broker) and
//! `127.0.0.1:8081` (the example service) are rewritten to the ports picked here, and
//! `WRIT_BROKER_URL` points at the broker as the default does for a reader. `cargo run -q --`
//! and the example's `cargo run` stand for the binaries this test suite built.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{ServeProcess, WRIT};

/// One `$ ` command of a console block and the output shown after it.
#[derive(Debug)]
struct Step {
    command: String,
    shown: Vec<String>,
}

/// The commands of every ```console block, in order.
fn console_steps(markdown: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut in_console = false;
    let mut continued = false;
    for line in markdown.lines() {
        if !in_console {
            in_console = line.trim_end() == "```console";
            continue;
        }
        if line.trim_end() == "```" {
            in_console = false;
            continue;
        }
        if continued {
            if let Some(step) = steps.last_mut() {
                step.command.push('\n');
                step.command.push_str(line);
            }
        } else if let Some(command) = line.strip_prefix("$ ") {
            steps.push(Step {
                command: command.to_owned(),
                shown: Vec::new(),
            });
        } else if let Some(step) = steps.last_mut() {
            step.shown.push(line.to_owned());
        } else {
            panic!("README.md: console output before any command: {line:?}");
        }
        continued = steps
            .last()
            .is_some_and(|step| step.command.trim_end().ends_with('\\'));
    }
    steps
}

/// `line` with runs of whitespace collapsed and every word holding a digit replaced by `#`;
/// in a shown line (`pattern`), a word running into `…` becomes, with it, `*` (anything).
fn masked(line: &str, pattern: bool) -> String {
    let word = |c: char| c.is_alphanumeric() || "_-+/=.:@%".contains(c);
    let mut out = String::new();
    let mut chars = line.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if word(c) {
            let mut token = String::from(c);
            while let Some(&next) = chars.peek().filter(|&&n| word(n)) {
                token.push(next);
                chars.next();
            }
            if pattern && chars.peek() == Some(&'…') {
                chars.next();
                out.push('*');
            } else if token.chars().any(|c| c.is_ascii_digit()) {
                out.push('#');
            } else {
                out.push_str(&token);
            }
        } else if c.is_whitespace() {
            while chars.peek().is_some_and(|n| n.is_whitespace()) {
                chars.next();
            }
            out.push(' ');
        } else if pattern && c == '…' {
            out.push('*');
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `text` matches `pattern`, where `*` stands for any text.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, rest) = (parts[0], &parts[1..]);
    let Some(mut text) = text.strip_prefix(first) else {
        return false;
    };
    for (index, part) in rest.iter().enumerate() {
        if index + 1 == rest.len() {
            return text.ends_with(part);
        }
        match text.find(part) {
            Some(at) => text = &text[at + part.len()..],
            None => return false,
        }
    }
    text.is_empty()
}

/// The first shown line not found (in order) in `printed`, if any.
fn missing_line(shown: &[String], printed: &str) -> Option<String> {
    let mut printed = printed.lines().map(|line| masked(line, false));
    shown
        .iter()
        .filter(|line| line.trim() != "…" && !line.trim().is_empty())
        .find(|line| {
            let pattern = masked(line, true);
            !printed.any(|line| glob(&pattern, &line))
        })
        .cloned()
}

fn expects_failure(shown: &[String]) -> bool {
    shown.first().is_some_and(|line| {
        ["refused", "denied", "error:"]
            .iter()
            .any(|start| line.starts_with(start))
    })
}

/// A bash session fed one command at a time; kills it and what it started in the background
/// when dropped.
struct Session {
    bash: Child,
    stdin: ChildStdin,
    out: PathBuf,
}

impl Session {
    fn start(dir: &Path, path: &str, broker_url: &str, listen: &str) -> Session {
        let out = dir.join(".readme-test");
        std::fs::create_dir_all(&out).unwrap();
        let mut bash = Command::new("bash")
            .current_dir(dir)
            .env("PATH", path)
            .env("WRIT_BROKER_URL", broker_url)
            .env("LISTEN", listen)
            .env_remove("WRIT_ADMIN_TOKEN")
            .env_remove("WRIT_CONFIG")
            .env_remove("WRIT_DATABASE_URL")
            .env_remove("WRIT_KEY_DIR")
            .env_remove("WRIT_POLICY_DIR")
            .env_remove("WRIT_LISTEN")
            .env_remove("WRIT_DEV")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = bash.stdin.take().unwrap();
        Session { bash, stdin, out }
    }

    fn send(&mut self, script: &str) {
        self.stdin.write_all(script.as_bytes()).unwrap();
        self.stdin.flush().unwrap();
    }

    /// Runs command `n`; answers its exit code and output.
    fn run(&mut self, n: usize, command: &str) -> (i32, String) {
        let output = self.out.join(format!("{n}.out"));
        let code = self.out.join(format!("{n}.rc"));
        // The newline before `}` ends a trailing comment of the command.
        self.send(&format!(
            "{{ {command}\n}} </dev/null >{output} 2>&1; echo $? >{code}\n",
            output = output.display(),
            code = code.display(),
        ));
        let started = Instant::now();
        loop {
            if let Some(rc) = std::fs::read_to_string(&code)
                .ok()
                .and_then(|text| text.trim().parse().ok())
            {
                return (rc, std::fs::read_to_string(&output).unwrap_or_default());
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "README.md: `{command}` did not finish:\n{}",
                std::fs::read_to_string(&output).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts background command `n`; answers once `shown` has appeared in its output.
    fn start_background(&mut self, n: usize, command: &str, shown: &[String]) {
        let output = self.out.join(format!("{n}.out"));
        let pids = self.out.join("background.pids");
        self.send(&format!(
            "{{ {command}\n}} </dev/null >{output} 2>&1; echo $! >>{pids}\n",
            output = output.display(),
            pids = pids.display(),
        ));
        let started = Instant::now();
        loop {
            let printed = std::fs::read_to_string(&output).unwrap_or_default();
            if missing_line(shown, &printed).is_none() {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "README.md: `{command}` did not print {shown:?}:\n{printed}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let pids = std::fs::read_to_string(self.out.join("background.pids")).unwrap_or_default();
        for pid in pids.split_whitespace() {
            let _ = Command::new("kill").arg(pid).status();
        }
        let _ = self.bash.kill();
        let _ = self.bash.wait();
    }
}

fn free_loopback_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// The example service built beside the test binaries (`cargo test --workspace` builds it).
fn downstream_example() -> PathBuf {
    let debug = Path::new(WRIT).parent().unwrap();
    let example = debug.join("examples").join("downstream");
    assert!(
        example.exists(),
        "{} is missing: run the workspace's tests (scripts/test.sh or cargo test --workspace), \
         which build the examples, or cargo build -p writ-verify --example downstream --features axum",
        example.display()
    );
    example
}

#[test]
fn the_readme_console_blocks_run_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let steps = console_steps(&readme);
    assert!(steps.len() > 20, "README.md has its walkthrough");

    let dir = tempfile::tempdir().unwrap();
    // The walkthrough runs in a checkout: the examples it names are there.
    std::os::unix::fs::symlink(root.join("deploy"), dir.path().join("deploy")).unwrap();
    // The README's first command, on a free port.
    let broker = ServeProcess::start(dir.path(), "serve", &["--dev", "--listen", "127.0.0.1:0"]);
    let broker_address = broker.url.trim_start_matches("http://").to_owned();
    let service_address = free_loopback_address();

    let bin = dir.path().join(".readme-bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(WRIT, bin.join("writ")).unwrap();
    std::fs::write(
        bin.join("cargo"),
        format!(
            "#!/usr/bin/env bash\n\
             # The checkout's `cargo run` forms of the README, as built for this test.\n\
             case \"$*\" in\n\
             \"run -q -- \"*) shift 3; exec writ \"$@\" ;;\n\
             \"run -p writ-verify --example downstream --features axum\") exec {example} ;;\n\
             *) echo \"README test: unexpected cargo $*\" >&2; exit 2 ;;\n\
             esac\n",
            example = downstream_example().display()
        ),
    )
    .unwrap();
    let shim = bin.join("cargo");
    let mut permissions = std::fs::metadata(&shim).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&shim, permissions).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut session = Session::start(dir.path(), &path, &broker.url, &service_address);

    let localize = |text: &str| {
        text.replace("127.0.0.1:8080", &broker_address)
            .replace("127.0.0.1:8081", &service_address)
    };
    for (n, step) in steps.iter().enumerate() {
        let command = localize(&step.command);
        let shown: Vec<String> = step.shown.iter().map(|line| localize(line)).collect();
        if command.trim_end().ends_with('&') {
            session.start_background(n, &command, &shown);
            continue;
        }
        let (code, printed) = session.run(n, &command);
        let expected = i32::from(expects_failure(&shown));
        assert_eq!(
            code, expected,
            "README.md: `{command}` exited {code}, the README implies {expected}:\n{printed}"
        );
        if let Some(line) = missing_line(&shown, &printed) {
            panic!("README.md: `{command}` did not print\n  {line}\nit printed:\n{printed}");
        }
        if command.contains("writ keys rotate") {
            // As the README says, the running broker signs with the new key "within about a
            // second"; a reader takes longer than that to type the next command.
            std::thread::sleep(Duration::from_secs(2));
        }
    }
    drop(session);
    drop(broker);
}

#[test]
fn the_output_comparison_masks_what_changes_between_runs() {
    let shown = [
        "writ wr_d39d1862 for dev:demo-agent (task \"demo\"), expires 2026-11-22T03:47:01Z"
            .to_owned(),
        "…".to_owned(),
        "\"writ\": \"CAESkwQKqAMK…\",".to_owned(),
    ];
    let printed = "writ wr_77aa for dev:demo-agent (task \"demo\"), expires 2027-01-01T00:00:00Z\n\
                   other\n  \"writ\":   \"EnQKCgoEd3JpdBgDIgIQAQ\",\n";
    assert_eq!(missing_line(&shown, printed), None);
    let other_agent = printed.replace("dev:demo-agent", "dev:other");
    assert!(missing_line(&shown, &other_agent).is_some());
    assert!(glob("a*c", "abbc") && !glob("a*c", "abd") && glob("*", ""));
}
