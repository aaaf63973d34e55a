#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The `janus` client commands as people and CI jobs run them: the built binary against the real `janus demo`
//! (two simulated clusters, the controller and the web), each identity with its own config directory. Covers
//! login, the token file's mode, requests and decisions from two identities, `--wait`, personal API tokens and
//! their scopes, `-o json|yaml`, the documented exit codes of bad input, and the `kubectl janus` plugin with
//! the real kubectl.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_janus");

mod common;

use common::{free_port, start_demo};

/// One person at a terminal: a HOME and config directory of their own, no JANUS_* from the test's
/// environment.
struct User {
    home: tempfile::TempDir,
    env: Vec<(String, String)>,
    path: Option<String>,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

impl User {
    fn new() -> User {
        User {
            home: tempfile::tempdir().unwrap(),
            env: Vec::new(),
            path: None,
        }
    }

    fn config_dir(&self) -> PathBuf {
        self.home.path().join("xdg").join("janus")
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(args)
            .env_remove("JANUS_URL")
            .env_remove("JANUS_TOKEN")
            .env_remove("RUST_BACKTRACE")
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join("xdg"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        if let Some(p) = &self.path {
            c.env("PATH", p);
        }
        c
    }

    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut c = self.command(BIN, args);
        c.stdin(Stdio::piped());
        let mut child = c.spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        finish(child.wait_with_output().unwrap(), args)
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut c = self.command(BIN, args);
        c.stdin(Stdio::null());
        finish(c.output().unwrap(), args)
    }

    fn login(&self, url: &str, user: &str, password: &str) {
        let r = self.run_with_stdin(
            &["login", "--url", url, "--username", user, "--password-stdin"],
            &format!("{password}\n"),
        );
        assert_eq!(r.code, 0, "login as {user}: {}", r.stderr);
        assert!(r.stdout.contains("Logged in to"), "{}", r.stdout);
    }

    /// The saved credential: the token file's first line (the second names the server it belongs to).
    fn token(&self) -> String {
        let text = std::fs::read_to_string(self.config_dir().join("token")).unwrap();
        assert!(
            text.lines().nth(1).is_some_and(|l| l.starts_with("url=")),
            "the token file names its server: {}",
            text.lines().nth(1).unwrap_or_default()
        );
        text.lines().next().unwrap_or_default().trim().to_string()
    }
}

/// Every run: the exit code is a number (no signal), and stderr never shows a panic or a backtrace.
fn finish(o: Output, args: &[&str]) -> Run {
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let code = o
        .status
        .code()
        .unwrap_or_else(|| panic!("{args:?} died by a signal: {stderr}"));
    assert!(
        !stderr.contains("panicked") && !stderr.contains("stack backtrace") && !stderr.contains("RUST_BACKTRACE"),
        "{args:?} crashed: {stderr}"
    );
    Run { code, stdout, stderr }
}

fn create_request(u: &User, reason: &str) -> String {
    let r = u.run(&[
        "request",
        "--cluster",
        "remote",
        "-n",
        "payments",
        "--for",
        "5m",
        "--reason",
        reason,
        "-o",
        "json",
    ]);
    assert_eq!(r.code, 0, "request: {}", r.stderr);
    let v = r.json();
    assert_eq!(v["phase"], "Pending", "{v}");
    v["name"].as_str().unwrap().to_string()
}

#[test]
fn the_client_commands_work_end_to_end_against_the_demo() {
    let data = tempfile::tempdir().unwrap();
    let demo = start_demo(data.path());
    let engineer = User::new();
    let admin = User::new();

    // Log in with a password (stdin) as two people, each in their own config directory.
    engineer.login(&demo.url, "engineer", &demo.engineer);
    admin.login(&demo.url, "admin", &demo.admin);
    let token_file = engineer.config_dir().join("token");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "token file mode");
    let dmode = std::fs::metadata(engineer.config_dir()).unwrap().permissions().mode() & 0o777;
    assert_eq!(dmode, 0o700, "config dir mode");
    assert!(engineer.token().starts_with("janus_cli_"));
    let cfg = std::fs::read_to_string(engineer.config_dir().join("config.toml")).unwrap();
    assert!(cfg.contains(&demo.url), "{cfg}");

    // A wrong password: exit 3 and what to do.
    let wrong = User::new();
    let r = wrong.run_with_stdin(
        &[
            "login",
            "--url",
            &demo.url,
            "--username",
            "engineer",
            "--password-stdin",
        ],
        "not-the-password\n",
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(!wrong.config_dir().join("token").exists());

    // whoami, as JSON and as a table.
    let r = engineer.run(&["whoami", "-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let me = r.json();
    assert_eq!(me["email"], "engineer@example.com", "{me}");
    let r = admin.run(&["whoami"]);
    assert!(
        r.stdout.contains("admin@example.com") && r.stdout.contains("Admin:"),
        "{}",
        r.stdout
    );

    // request → listed (json, yaml, table) → shown.
    let name = create_request(&engineer, "cli end to end");
    let r = engineer.run(&["requests", "-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let list = r.json();
    assert!(
        list.as_array().unwrap().iter().any(|x| x["name"] == name.as_str()),
        "{list}"
    );
    let r = engineer.run(&["requests", "-o", "yaml"]);
    let yaml: Value = yaml_serde::from_str(&r.stdout).unwrap();
    assert!(yaml.as_array().unwrap().iter().any(|x| x["name"] == name.as_str()));
    let r = engineer.run(&["requests"]);
    assert!(r.stdout.starts_with("NAME") && r.stdout.contains(&name), "{}", r.stdout);
    let r = engineer.run(&["show", &name, "-o", "json"]);
    assert_eq!(r.json()["reason"], "cli end to end");
    let r = engineer.run(&["show", &name]);
    assert!(
        r.stdout.contains("Phase:") && r.stdout.contains("Pending"),
        "{}",
        r.stdout
    );

    // A requester's reason cannot forge lines of what the approver reads: the server refuses escape sequences
    // in a reason, but takes line breaks, and `show` printed them raw, adding a fake "Cluster: dev" line
    // under the real one. Now the break is shown as \x0a; -o json keeps the reason exact.
    let spoof = "fix\nCluster:  dev";
    let spoofed = create_request(&engineer, spoof);
    let r = admin.run(&["show", &spoofed]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        !r.stdout.lines().any(|l| l.starts_with("Cluster:") && l.contains("dev")),
        "show printed a forged line: {}",
        r.stdout
    );
    assert!(r.stdout.contains("fix\\x0aCluster:  dev"), "{}", r.stdout);
    let r = admin.run(&["requests", "--all"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stdout.lines().any(|l| l.starts_with("Cluster:")), "{}", r.stdout);
    let r = admin.run(&["show", &spoofed, "-o", "json"]);
    assert_eq!(r.json()["reason"], spoof);
    assert_eq!(engineer.run(&["withdraw", &spoofed]).code, 0);

    // The saved login is only sent to the server it was issued for: another --url or JANUS_URL is refused
    // before anything is sent (a plain listener stands for the other server).
    let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let elsewhere_url = format!("http://{}", elsewhere.local_addr().unwrap());
    elsewhere.set_nonblocking(true).unwrap();
    let r = engineer.run(&["whoami", "--url", &elsewhere_url]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("the saved login is for {}", demo.url))
            && r.stderr.contains(&format!("janus login --url {elsewhere_url}")),
        "{}",
        r.stderr
    );
    let mut redirected = User::new();
    let saved = engineer.config_dir();
    let copy = redirected.config_dir();
    std::fs::create_dir_all(&copy).unwrap();
    for f in ["token", "config.toml"] {
        std::fs::copy(saved.join(f), copy.join(f)).unwrap();
    }
    redirected.env = vec![("JANUS_URL".into(), elsewhere_url.clone())];
    let r = redirected.run(&["requests"]);
    assert_eq!(r.code, 3, "JANUS_URL elsewhere: {}", r.stderr);
    assert!(
        elsewhere.accept().is_err(),
        "the saved token must not be sent to another server"
    );

    // The requester cannot approve their own request (403 → 4); the admin can (0); twice is a conflict (6).
    let r = engineer.run(&["approve", &name]);
    assert_eq!(r.code, 4, "self-approval: {} {}", r.stdout, r.stderr);
    let r = admin.run(&["approve", &name, "--comment", "ok from the cli"]);
    assert_eq!(r.code, 0, "approve: {}", r.stderr);
    let r = admin.run(&["approve", &name]);
    assert_eq!(r.code, 6, "approve twice: {}", r.stderr);
    assert!(!r.stderr.trim().is_empty());

    // Unknown request: 5.
    let r = engineer.run(&["show", "no-such-request-4711"]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    // A name Kubernetes could never hold is no request either (the server answered 503 for it).
    let r = engineer.run(&["approve", "Not A Name"]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains("janus requests"), "{}", r.stderr);

    // --wait follows a request until an approval from the second identity makes it Active.
    let mut waiting = engineer
        .command(
            BIN,
            &[
                "request",
                "--cluster",
                "remote",
                "-n",
                "payments",
                "--for",
                "5m",
                "--reason",
                "cli wait",
                "--wait",
                "--wait-timeout",
                "2m",
            ],
        )
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(waiting.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let waited = line
        .strip_prefix("Request ")
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no name in {line:?}"))
        .to_string();
    std::thread::spawn(move || for _ in err.lines() {});
    let r = admin.run(&["approve", &waited]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = waiting.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "--wait did not return after the approval");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status.code(), Some(0), "--wait exit code");
    let mut out = String::new();
    std::io::Read::read_to_string(&mut waiting.stdout.take().unwrap(), &mut out).unwrap();
    assert!(out.contains("is Active"), "{out}");

    // --wait on a request that gets denied: 9.
    let mut denied = engineer
        .command(
            BIN,
            &[
                "request",
                "--cluster",
                "remote",
                "-n",
                "payments",
                "--reason",
                "cli deny",
                "--wait",
                "--wait-timeout",
                "2m",
            ],
        )
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(denied.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let to_deny = line
        .strip_prefix("Request ")
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    std::thread::spawn(move || for _ in err.lines() {});
    let r = admin.run(&["deny", &to_deny, "--reason", "not today"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let o = denied.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(9), "--wait on a denied request");

    // --wait gives up after --wait-timeout: 9, and says how to follow the request.
    let r = engineer.run(&[
        "request",
        "--cluster",
        "remote",
        "-n",
        "payments",
        "--reason",
        "cli give up",
        "--wait",
        "--wait-timeout",
        "2s",
    ]);
    assert_eq!(r.code, 9, "{}", r.stderr);
    assert!(
        r.stderr.contains("gave up waiting") && r.stderr.contains("janus show"),
        "{}",
        r.stderr
    );

    // Withdraw one's own request; revoke an active one.
    let gone = create_request(&engineer, "cli withdraw");
    assert_eq!(engineer.run(&["withdraw", &gone]).code, 0);
    let r = admin.run(&["revoke", &name, "--reason", "done", "-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        ["Revoked", "Approved", "Active"].contains(&r.json()["phase"].as_str().unwrap()),
        "{}",
        r.stdout
    );

    // Bad input: a value the server refuses (422 → 2), flags clap refuses (2).
    let r = engineer.run(&["request", "--cluster", "nowhere", "-n", "x", "--reason", "r"]);
    assert_eq!(r.code, 2, "unknown cluster: {}", r.stderr);
    for bad in [
        vec![
            "request",
            "--cluster",
            "remote",
            "-n",
            "payments",
            "--reason",
            "r",
            "--for",
            "banana",
        ],
        vec![
            "request",
            "--cluster",
            "remote",
            "-n",
            "payments",
            "--reason",
            "r",
            "--start",
            "tomorrow",
        ],
        vec!["requests", "-o", "xml"],
        vec!["approve"],
    ] {
        let r = engineer.run(&bad);
        assert_eq!(r.code, 2, "{bad:?}: {}", r.stderr);
    }

    // Personal API tokens: created once, scoped, listed, revoked.
    let r = engineer.run(&["tokens", "create", "--name", "ci-read", "--scopes", "read"]);
    assert_eq!(r.code, 0, "tokens create: {}", r.stderr);
    let read_pat = r.stdout.trim().to_string();
    assert!(read_pat.starts_with("janus_pat_"), "{read_pat}");
    let r = admin.run(&[
        "tokens",
        "create",
        "--name",
        "ci-request",
        "--scopes",
        "read,request",
        "-o",
        "json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let created = r.json();
    let request_pat = created["token"].as_str().unwrap().to_string();
    let request_pat_id = created["displayId"].as_str().unwrap().to_string();

    // A CI job: JANUS_URL and JANUS_TOKEN, no config directory at all.
    let mut ci = User::new();
    ci.env = vec![
        ("JANUS_URL".into(), demo.url.clone()),
        ("JANUS_TOKEN".into(), read_pat.clone()),
    ];
    let r = ci.run(&["requests", "-o", "json"]);
    assert_eq!(r.code, 0, "a read token lists: {}", r.stderr);
    assert!(!ci.config_dir().exists());
    let r = ci.run(&["request", "--cluster", "remote", "-n", "payments", "--reason", "r"]);
    assert_eq!(r.code, 4, "a read token cannot request: {}", r.stderr);
    // A request-scoped token of an approver cannot approve.
    let pending = create_request(&engineer, "cli scopes");
    ci.env[1].1 = request_pat.clone();
    let r = ci.run(&["approve", &pending]);
    assert_eq!(r.code, 4, "a request token cannot approve: {}", r.stderr);
    assert!(r.stderr.contains("approve"), "{}", r.stderr);
    // Listed, then revoked: the token stops working (3).
    let r = admin.run(&["tokens", "list", "-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["displayId"] == request_pat_id.as_str())
    );
    let r = admin.run(&["tokens", "list"]);
    assert!(
        r.stdout.contains(&request_pat_id) && !r.stdout.contains(&request_pat),
        "{}",
        r.stdout
    );
    assert_eq!(admin.run(&["tokens", "revoke", &request_pat_id]).code, 0);
    let r = ci.run(&["requests"]);
    assert_eq!(r.code, 3, "a revoked token: {}", r.stderr);
    assert!(r.stderr.contains("janus login"), "{}", r.stderr);
    assert!(!r.stderr.contains(&request_pat), "the token must not be echoed");
    // Someone else's token id is not found.
    let r = engineer.run(&["tokens", "revoke", &request_pat_id]);
    assert_eq!(r.code, 5, "{}", r.stderr);

    // A personal token as the saved login (janus login --token -).
    let pat_user = User::new();
    let r = pat_user.run_with_stdin(&["login", "--url", &demo.url, "--token", "-"], &format!("{read_pat}\n"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = pat_user.run(&["whoami", "-o", "json"]);
    assert_eq!(r.json()["email"], "engineer@example.com");
    let r = pat_user.run_with_stdin(&["login", "--url", &demo.url, "--token", "-"], "janus_pat_short\n");
    assert_eq!(r.code, 2, "{}", r.stderr);

    // The kubectl plugin: the same binary as kubectl-janus on the PATH, run by the real kubectl.
    let bin = engineer.home.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(BIN, bin.join("kubectl-janus")).unwrap();
    let plugin = User {
        home: tempfile::tempdir().unwrap(),
        env: vec![(
            "XDG_CONFIG_HOME".into(),
            engineer.home.path().join("xdg").display().to_string(),
        )],
        path: Some(format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        )),
    };
    let kubectl = |args: &[&str]| {
        let mut c = plugin.command("kubectl", args);
        c.stdin(Stdio::null());
        finish(c.output().expect("kubectl on the PATH"), args)
    };
    let r = kubectl(&["janus", "whoami"]);
    assert_eq!(r.code, 0, "kubectl janus whoami: {} {}", r.stdout, r.stderr);
    assert!(r.stdout.contains("engineer@example.com"), "{}", r.stdout);
    let r = kubectl(&["janus", "requests", "-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == pending.as_str())
    );
    let r = kubectl(&["janus", "--help"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("kubectl janus"), "{}", r.stdout);
    assert!(
        !r.stdout.contains("controller"),
        "the plugin offers no server commands: {}",
        r.stdout
    );
    let r = kubectl(&["janus", "show", "no-such-request-4711"]);
    assert_eq!(r.code, 5, "kubectl passes the exit code on: {}", r.stderr);

    // Logout ends the CLI session on the server: the old token no longer works (3).
    let old = engineer.token();
    let r = engineer.run(&["logout"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!token_file.exists());
    let r = engineer.run(&["requests"]);
    assert_eq!(r.code, 3, "after logout: {}", r.stderr);
    ci.env[1].1 = old;
    let r = ci.run(&["whoami"]);
    assert_eq!(r.code, 3, "a logged-out session token: {}", r.stderr);
}

#[test]
fn help_lists_the_client_commands_apart_from_the_server_commands() {
    let u = User::new();
    let r = u.run(&["--help"]);
    assert_eq!(r.code, 0);
    let client = r.stdout.find("Client commands").expect("a client heading");
    let server = r.stdout.find("Server commands").expect("a server heading");
    assert!(client < server);
    let login = r.stdout.find("  login ").expect("login listed");
    let controller = r.stdout.find("  controller ").expect("controller listed");
    assert!(client < login && login < server && server < controller, "{}", r.stdout);
    assert!(r.stdout.contains("Exit codes"), "{}", r.stdout);
    // The server commands still parse as before.
    let r = u.run(&["crd"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("CustomResourceDefinition"));
}

#[test]
fn completions_are_printed_for_bash_zsh_and_fish() {
    let u = User::new();
    for shell in ["bash", "zsh", "fish"] {
        let r = u.run(&["completion", shell]);
        assert_eq!(r.code, 0, "{shell}: {}", r.stderr);
        assert!(r.stdout.contains("janus") && r.stdout.contains("login"), "{shell}");
    }
    assert_eq!(u.run(&["completion", "powershell-7"]).code, 2);
}

#[test]
fn bad_input_gets_a_clear_message_and_its_exit_code() {
    let u = User::new();
    // Not logged in, no server configured: 3, and what to run.
    let r = u.run(&["requests"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("janus login"), "{}", r.stderr);

    // Server down (nothing listens on the port): 7, naming the URL.
    let url = format!("http://127.0.0.1:{}", free_port());
    let pat = format!("janus_pat_{}", "a".repeat(40));
    let mut ci = User::new();
    ci.env = vec![("JANUS_URL".into(), url.clone()), ("JANUS_TOKEN".into(), pat.clone())];
    let r = ci.run(&["whoami"]);
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert!(r.stderr.contains(&url), "{}", r.stderr);
    assert!(!r.stderr.contains(&pat), "{}", r.stderr);
    // Login to a server that is down: 7 too, and nothing saved.
    let r = u.run_with_stdin(&["login", "--url", &url, "--username", "x", "--password-stdin"], "pw\n");
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert!(!u.config_dir().join("token").exists());

    // Something that is not a janus server (a plain HTTP listener answering HTML): 7.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let mut s = s;
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut s, &mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 404 Not Found\r\ncontent-type: text/html\r\ncontent-length: 9\r\nconnection: close\r\n\r\n<p>no</p>",
            );
        }
    });
    ci.env[0].1 = other.clone();
    let r = ci.run(&["requests"]);
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert!(r.stderr.contains(&other), "{}", r.stderr);

    // A malformed URL: 2.
    ci.env[0].1 = "janus.example.com".into();
    assert_eq!(ci.run(&["whoami"]).code, 2);

    // Plain http to another machine: refused (2) unless --insecure-http; then it is tried (7: no such host).
    ci.env[0].1 = "http://janus.invalid".into();
    let r = ci.run(&["whoami"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--insecure-http"), "{}", r.stderr);
    assert_eq!(ci.run(&["whoami", "--insecure-http"]).code, 7);
    let r = u.run_with_stdin(
        &[
            "login",
            "--url",
            "http://janus.invalid",
            "--username",
            "x",
            "--password-stdin",
        ],
        "pw\n",
    );
    assert_eq!(r.code, 2, "{}", r.stderr);

    // Flags that would overflow the clock: a clear error and 2, never a panic (finish() checks stderr).
    ci.env[0].1 = url.clone();
    let request = ["request", "--cluster", "c", "-n", "ns", "--for", "1h", "--reason", "r"];
    let r = ci.run(&[&request[..], &["--start", "+300000000y"]].concat());
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("too far ahead"), "{}", r.stderr);
    let r = ci.run(&[&request[..], &["--wait", "--wait-timeout", "300000000y"]].concat());
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("longer than a year"), "{}", r.stderr);

    // A literal token on argv works but warns (ps, shell history).
    let r = u.run(&["login", "--url", &url, "--token", &pat]);
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert!(r.stderr.contains("janus login --token -"), "{}", r.stderr);
    assert!(!r.stderr.contains(&pat), "{}", r.stderr);

    // A token file other users may read is not used (3) and the message says how to fix it.
    let dir = u.config_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.toml"), format!("url = \"{url}\"\n")).unwrap();
    std::fs::write(dir.join("token"), format!("{pat}\n")).unwrap();
    std::fs::set_permissions(dir.join("token"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = u.run(&["whoami"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("chmod 600"), "{}", r.stderr);
    // A broken config.toml: 2, naming the file.
    std::fs::write(dir.join("config.toml"), "url = [\n").unwrap();
    let r = u.run(&["logout"]);
    assert_eq!(r.code, 0, "logout still deletes the token: {}", r.stderr);
    assert!(!dir.join("token").exists());
    std::fs::write(dir.join("token"), format!("{pat}\n")).unwrap();
    std::fs::set_permissions(dir.join("token"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let r = u.run(&["whoami"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("config.toml"), "{}", r.stderr);

    // Unknown flags: clap's 2, no crash.
    assert_eq!(u.run(&["requests", "--bogus"]).code, 2);
    assert_eq!(u.run(&["login", "--oidc", "--token", "x"]).code, 2);
}
