#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `janus shell`, `janus exec` and `janus logs` as an engineer runs them, against the real `janus demo`:
//! the shell under tmux (a real terminal: raw mode, resize, the prompt, a revoke that ends it, the local
//! terminal restored, the recording replayed by an admin), exec in pipes with stdout, stderr and the exit
//! code kept apart, and the documented exit codes of what goes wrong.

use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const JANUS: &str = env!("CARGO_BIN_EXE_janus");
const TMUX: &str = "/usr/bin/tmux";

mod common;

use common::start_demo;

/// The public API with a CLI session (`POST /api/v1/cli/login`), as the CLI itself holds it.
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn login(base: &str, user: &str, password: &str) -> Api {
        let http = reqwest::Client::new();
        let r = http
            .post(format!("{base}/api/v1/cli/login"))
            .json(&json!({"username": user, "password": password}))
            .send()
            .await
            .expect("cli login");
        assert_eq!(r.status(), 200, "cli login as {user}");
        let body: Value = r.json().await.expect("json");
        let token = body["token"].as_str().expect("token").to_string();
        assert!(token.starts_with("janus_cli_"), "a CLI session token");
        Api {
            http,
            base: base.to_string(),
            token,
        }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("POST");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// A request for `payments` on the remote cluster, approved by `admin` and Active.
    async fn active_request(&self, admin: &Api) -> String {
        let (status, created) = self
            .post(
                "/api/v1/requests",
                json!({"cluster": "remote", "namespaces": ["payments"], "ttlSeconds": 300, "reason": "cli test"}),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        let name = created["name"].as_str().unwrap().to_string();
        let (status, body) = admin.post(&format!("/api/v1/requests/{name}/approve"), json!({})).await;
        assert_eq!(status, 200, "{body}");
        for _ in 0..400 {
            let (_, v) = self.get(&format!("/api/v1/requests/{name}")).await;
            let v: Value = serde_json::from_str(&v).unwrap_or(Value::Null);
            if v["phase"] == "Active" {
                return name;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{name} never became Active");
    }
}

/// The client with only `JANUS_URL`/`JANUS_TOKEN` (and an empty config directory).
fn janus(home: &Path, url: &str, token: &str) -> Command {
    let mut c = Command::new(JANUS);
    c.env("XDG_CONFIG_HOME", home)
        .env("HOME", home)
        .env("JANUS_URL", url)
        .env("JANUS_TOKEN", token)
        .env_remove("RUST_LOG");
    c
}

/// Runs the client with `input` on stdin (closed afterwards, as in a pipe).
async fn run_with_input(mut cmd: Command, input: &[u8]) -> Output {
    let input = input.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("janus runs");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(&input).expect("write stdin");
        drop(stdin);
        child.wait_with_output().expect("output")
    })
    .await
    .expect("join")
}

/// Writes `input` to a spawned child's stdin, closes it and waits.
fn run_with_input_child(mut child: Child, input: &[u8]) -> Output {
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input).expect("write stdin");
    drop(stdin);
    child.wait_with_output().expect("wait")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A private tmux server (its own socket) with one fixed-size pane running a script.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(tag: &str, dir: &Path, cols: u16, rows: u16, script: &Path, env: &[(&str, &str)]) -> Tmux {
        let socket = format!("janus-cli-test-{}-{tag}", std::process::id());
        let conf = dir.join("tmux.conf");
        // No status line: the pane is the whole window, so its size is the size asked for. The pane stays
        // after the script ends, to be read.
        std::fs::write(
            &conf,
            "set -g status off\nset -g remain-on-exit on\nset -g history-limit 5000\n",
        )
        .unwrap();
        let mut c = Command::new(TMUX);
        c.args(["-L", &socket, "-f"]).arg(&conf).args([
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            &cols.to_string(),
            "-y",
            &rows.to_string(),
        ]);
        for (k, v) in env {
            c.args(["-e", &format!("{k}={v}")]);
        }
        let status = c
            .arg(format!("bash --norc --noprofile {}", script.display()))
            .status()
            .expect("tmux runs");
        assert!(status.success(), "tmux started");
        Tmux { socket }
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new(TMUX)
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux");
        assert!(out.status.success(), "tmux {args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    }

    /// The pane's text, scrollback included.
    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-J", "-t", "t", "-S", "-"])
    }

    fn type_line(&self, line: &str) {
        self.tmux(&["send-keys", "-t", "t", "-l", line]);
        self.tmux(&["send-keys", "-t", "t", "Enter"]);
    }

    /// Waits until `ready` holds for the pane's text.
    fn wait_until(&self, within: Duration, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let s = self.screen();
            if ready(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "the pane never got ready; it shows:\n{s}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the pane shows `needle` (a count of occurrences, so a repeated command is told apart).
    fn wait_for(&self, needle: &str, times: usize, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let s = self.screen();
            if s.matches(needle).count() >= times {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "the pane never showed {needle:?} ({times}x); it shows:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new(TMUX).args(["-L", &self.socket, "kill-server"]).status();
    }
}

/// The first process named `name` below `pid` (the pane's shell → bash → janus).
fn descendant_named(pid: i32, name: &str) -> Option<i32> {
    let mut frontier = vec![pid];
    for _ in 0..4 {
        let mut next = Vec::new();
        for p in frontier {
            let out = Command::new("pgrep").args(["-P", &p.to_string()]).output().ok()?;
            for child in text(&out.stdout)
                .split_whitespace()
                .filter_map(|c| c.parse::<i32>().ok())
            {
                let comm = std::fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
                if comm.trim() == name {
                    return Some(child);
                }
                next.push(child);
            }
        }
        frontier = next;
    }
    None
}

/// `stty -a` without the window size (the test resizes the window on purpose).
fn settings(stty: &str) -> Vec<String> {
    stty.split([';', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty() && !s.starts_with("rows") && !s.starts_with("columns") && !s.starts_with("speed"))
        .map(str::to_string)
        .collect()
}

fn wait_file(path: &Path, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(s) = std::fs::read_to_string(path)
            && s.ends_with('\n')
        {
            return s;
        }
        assert!(Instant::now() < deadline, "{} was never written", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_shell_types_resizes_is_cut_off_by_a_revoke_restores_the_terminal_and_replays() {
    let dir = tempfile::tempdir().expect("tmp");
    let demo = start_demo(&dir.path().join("demo"));
    let engineer = Api::login(&demo.url, "engineer", &demo.engineer).await;
    let admin = Api::login(&demo.url, "admin", &demo.admin).await;
    let name = engineer.active_request(&admin).await;

    let work = dir.path().join("pane");
    std::fs::create_dir_all(&work).unwrap();
    let script = work.join("run.sh");
    std::fs::write(
        &script,
        format!(
            "cd {work}\n{JANUS} shell {name} 2> choose.err; echo $? > choose.code\n\
             stty -a > before.tmp && mv before.tmp before\n{JANUS} shell {name} payments-api\n\
             echo \"janus-exit=$?\" > code\nstty -a > after.tmp && mv after.tmp after\necho pane-script-done\n",
            work = work.display()
        ),
    )
    .unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let home_s = home.display().to_string();
    let tmux = Tmux::start(
        "revoke",
        &work,
        100,
        30,
        &script,
        &[
            ("JANUS_URL", demo.url.as_str()),
            ("JANUS_TOKEN", engineer.token.as_str()),
            ("XDG_CONFIG_HOME", home_s.as_str()),
            ("HOME", home_s.as_str()),
        ],
    );

    // Without POD and with several pods in the grant, the client lists them instead of guessing.
    assert_eq!(wait_file(&work.join("choose.code"), Duration::from_secs(30)), "2\n");
    let choose = std::fs::read_to_string(work.join("choose.err")).unwrap();
    assert!(
        choose.contains("choose one: ") && choose.contains("payments-api-7f9c4") && choose.contains("payments-worker"),
        "{choose}"
    );

    // The remote shell's prompt (the web sets PS1 to janus@<pod>, but the account's ~/.bashrc may replace
    // it, as root's does on Debian), then the shell the web started: JANUS_POD names the pod.
    tmux.wait_until(Duration::from_secs(30), |s| s.trim_end().ends_with(['$', '#']));
    tmux.type_line("echo pod=$JANUS_POD");
    tmux.wait_for("pod=payments-api", 1, Duration::from_secs(10));
    let pane_tty = tmux.tmux(&["display-message", "-p", "-t", "t", "#{pane_tty}"]);
    let during = Command::new("stty")
        .args(["-a", "-F", pane_tty.trim()])
        .output()
        .expect("stty");
    let during = text(&during.stdout);
    assert!(
        during.contains("-icanon") && during.contains("-echo ") && during.contains("-isig"),
        "the local terminal is in raw mode during the session: {during}"
    );
    tmux.type_line("echo hi-$((40+2))");
    tmux.wait_for("hi-42", 1, Duration::from_secs(10));

    // The remote terminal has the pane's size, and follows a resize of the window (SIGWINCH → resize).
    tmux.type_line("stty size");
    tmux.wait_for("30 100", 1, Duration::from_secs(10));
    tmux.tmux(&["resize-window", "-t", "t", "-x", "120", "-y", "40"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    tmux.type_line("stty size");
    tmux.wait_for("40 120", 1, Duration::from_secs(10));

    // A revoke ends the shell within 1 s (5 s allowed here) with the reason, and the exit code is 8.
    let revoked_at = Instant::now();
    let (status, body) = admin
        .post(
            &format!("/api/v1/requests/{name}/revoke"),
            json!({"reason": "cli test over"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The wait itself runs longer than the bound, so a late cut is measured and reported instead of being
    // mistaken for the wait's own timeout.
    let screen = tmux.wait_for("janus: session ended:", 1, Duration::from_secs(10));
    let cut_after = revoked_at.elapsed();
    eprintln!("janus shell was cut off {cut_after:?} after the revoke (promise: 1 s)");
    assert!(
        cut_after < Duration::from_secs(5),
        "cut off only {cut_after:?} after the revoke"
    );
    let ended = screen.lines().find(|l| l.contains("janus: session ended:")).unwrap();
    assert!(ended.contains("revoked"), "the reason is shown: {ended}");
    assert_eq!(wait_file(&work.join("code"), Duration::from_secs(10)), "janus-exit=8\n");

    // The local terminal is as it was before (raw mode undone: echo, canonical mode, signals).
    let before = wait_file(&work.join("before"), Duration::from_secs(1));
    let after = wait_file(&work.join("after"), Duration::from_secs(10));
    assert_eq!(
        settings(&before),
        settings(&after),
        "before:\n{before}\nafter:\n{after}"
    );
    assert!(after.contains("icanon") && !after.contains("-icanon"), "{after}");

    // The CLI session is recorded and an admin replays it like a browser one.
    let (status, sessions) = admin.get(&format!("/api/v1/requests/{name}/sessions")).await;
    assert_eq!(status, 200, "{sessions}");
    let sessions: Value = serde_json::from_str(&sessions).unwrap();
    let id = sessions["sessions"][0]["id"]
        .as_str()
        .expect("a recorded session")
        .to_string();
    // The web stores the recording after it told the client the session ended: wait for it.
    let mut recording = admin.get(&format!("/api/v1/recordings/{id}")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while recording.0 == 404 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        recording = admin.get(&format!("/api/v1/recordings/{id}")).await;
    }
    let (status, cast) = recording;
    assert_eq!(status, 200, "{cast}");
    let header: Value = serde_json::from_str(cast.lines().next().unwrap()).unwrap();
    assert_eq!(header["version"], 2, "asciicast v2: {header}");
    assert!(cast.contains("hi-42"), "the output is in the recording");
    let (status, _) = engineer.get(&format!("/api/v1/recordings/{id}")).await;
    assert_eq!(status, 403, "only admins replay");

    // SIGTERM to the client (a closing terminal emulator, a killed job): the terminal is restored too, the
    // socket closed, and the exit code is 128 + 15.
    let name = engineer.active_request(&admin).await;
    let work = dir.path().join("pane-term");
    std::fs::create_dir_all(&work).unwrap();
    let script = work.join("run.sh");
    std::fs::write(
        &script,
        format!(
            "cd {work}\nstty -a > before.tmp && mv before.tmp before\n{JANUS} shell {name} payments-api\n\
             echo \"janus-exit=$?\" > code\nstty -a > after.tmp && mv after.tmp after\n",
            work = work.display()
        ),
    )
    .unwrap();
    let tmux = Tmux::start(
        "term",
        &work,
        100,
        30,
        &script,
        &[
            ("JANUS_URL", demo.url.as_str()),
            ("JANUS_TOKEN", engineer.token.as_str()),
            ("XDG_CONFIG_HOME", home_s.as_str()),
            ("HOME", home_s.as_str()),
        ],
    );
    tmux.wait_until(Duration::from_secs(30), |s| s.trim_end().ends_with(['$', '#']));
    tmux.type_line("echo pod=$JANUS_POD");
    tmux.wait_for("pod=payments-api", 1, Duration::from_secs(10));
    let bash = tmux.tmux(&["display-message", "-p", "-t", "t", "#{pane_pid}"]);
    let client = descendant_named(bash.trim().parse().unwrap(), "janus").expect("the janus client runs in the pane");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(client), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert_eq!(
        wait_file(&work.join("code"), Duration::from_secs(10)),
        "janus-exit=143\n"
    );
    let before = wait_file(&work.join("before"), Duration::from_secs(1));
    let after = wait_file(&work.join("after"), Duration::from_secs(10));
    assert_eq!(
        settings(&before),
        settings(&after),
        "before:\n{before}\nafter:\n{after}"
    );
    tmux.wait_for("janus: terminated by signal 15", 1, Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_exec_and_logs_pass_streams_and_exit_codes_and_say_what_went_wrong() {
    let dir = tempfile::tempdir().expect("tmp");
    let demo = start_demo(&dir.path().join("demo"));
    let engineer = Api::login(&demo.url, "engineer", &demo.engineer).await;
    let admin = Api::login(&demo.url, "admin", &demo.admin).await;
    let name = engineer.active_request(&admin).await;
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let cli = |args: &[&str]| {
        let mut c = janus(&home, &demo.url, &engineer.token);
        c.args(args);
        c
    };

    // stdout and stderr apart, the remote exit code as ours.
    let out = run_with_input(
        cli(&[
            "exec",
            &name,
            "payments-api",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ]),
        b"",
    )
    .await;
    assert_eq!(
        (out.status.code(), text(&out.stdout), text(&out.stderr)),
        (Some(3), "out\n".to_string(), "err\n".to_string())
    );
    // stdin through a pipe, to its end (echo hi | janus exec … -- cat).
    let out = run_with_input(cli(&["exec", &name, "payments-api", "--", "cat"]), b"hi\nthere\n").await;
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(0), "hi\nthere\n".to_string()),
        "{}",
        text(&out.stderr)
    );

    // Failures of janus itself are 255 with a message, never the command's code.
    let out = run_with_input(
        cli(&["exec", &name, "payments-api", "-n", "checkout", "--", "true"]),
        b"",
    )
    .await;
    assert_eq!(out.status.code(), Some(255));
    assert!(text(&out.stderr).contains("not granted"), "{}", text(&out.stderr));
    let out = run_with_input(cli(&["exec", &name, "no-such-pod", "--", "true"]), b"").await;
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains("no pod no-such-pod"),
        "{}",
        text(&out.stderr)
    );

    // Logs: a pod or namespace outside the grant has its documented code (5 not found, 4 forbidden).
    let out = run_with_input(cli(&["logs", &name, "no-such-pod"]), b"").await;
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let out = run_with_input(cli(&["logs", &name, "checkout-web", "-n", "checkout"]), b"").await;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("not granted"), "{}", text(&out.stderr));
    // Without -f the lines there are, then exit 0.
    let out = run_with_input(cli(&["logs", &name, "payments-api", "--tail", "5"]), b"").await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("GET /v1/payments/"), "{}", text(&out.stdout));
    // The container itself writes a line that looks like the server's closing line (with real kubectl through
    // kubesim's log endpoint): it is log, shown on stdout, and does not end the stream as revoked (exit 0).
    let forged = "[log stream ended: access was revoked]";
    let kubeconfig = dir.path().join("demo").join("remote.kubeconfig");
    let appended = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args([
            "create",
            "--raw",
            "/kubesim/logs?namespace=payments&pod=payments-api&container=api",
            "-f",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    let appended = run_with_input_child(appended, format!("\n{forged}\n").as_bytes());
    assert!(appended.status.success(), "kubectl: {}", text(&appended.stderr));
    let out = run_with_input(cli(&["logs", &name, "payments-api", "--tail", "3"]), b"").await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "a forged closing line ended janus logs: {}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains(forged), "{}", text(&out.stdout));
    assert!(!text(&out.stderr).contains("log stream ended"), "{}", text(&out.stderr));

    // A shell needs a terminal; the message points to exec.
    let out = run_with_input(cli(&["shell", &name, "payments-api"]), b"").await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("janus exec"), "{}", text(&out.stderr));
    // A token the server does not know: 3 (255 for exec); a server that is down: 7.
    let fake = format!("janus_pat_{}", "x".repeat(40));
    let mut c = janus(&home, &demo.url, &fake);
    c.args(["logs", &name, "payments-api"]);
    let out = run_with_input(c, b"").await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains(&fake), "the token is never printed");
    let mut c = janus(&home, &demo.url, &fake);
    c.args(["exec", &name, "payments-api", "--", "true"]);
    assert_eq!(run_with_input(c, b"").await.status.code(), Some(255));
    let mut c = janus(&home, "http://127.0.0.1:1", &engineer.token);
    c.args(["logs", &name, "payments-api"]);
    let out = run_with_input(c, b"").await;
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));

    // A personal API token revoked while its command runs: the command's session ends within a second
    // (5 s allowed) and exec says why, with 255.
    let (status, created) = engineer
        .post(
            "/api/v1/tokens",
            json!({"name": "ci", "scopes": ["read", "request"], "expiresInDays": 1}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let pat = created["token"].as_str().unwrap().to_string();
    let display_id = created["displayId"].as_str().unwrap().to_string();
    let mut sleeper = janus(&home, &demo.url, &pat);
    sleeper.args(["exec", &name, "payments-api", "--", "sleep", "60"]);
    let sleeper = tokio::task::spawn_blocking(move || {
        let mut sleeper = sleeper;
        sleeper.stdin(Stdio::null()).output().expect("exec sleep")
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let revoked_at = Instant::now();
    let r = engineer
        .http
        .delete(format!("{}/api/v1/tokens/{display_id}", demo.url))
        .bearer_auth(&engineer.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let out = tokio::time::timeout(Duration::from_secs(10), sleeper)
        .await
        .expect("exec ended")
        .expect("join");
    assert!(
        revoked_at.elapsed() < Duration::from_secs(5),
        "ended after {:?}",
        revoked_at.elapsed()
    );
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("session ended: the API token was revoked"),
        "{}",
        text(&out.stderr)
    );

    // -f follows until the access ends: exit 8 with the reason, within 5 s of the revoke; a command that
    // runs then ends with 255 and the reason.
    let follow = cli(&["logs", &name, "payments-api", "-f", "--tail", "1"]);
    let follower = tokio::task::spawn_blocking(move || {
        let mut follow = follow;
        follow.stdin(Stdio::null()).output().expect("logs -f")
    });
    let sleeper = cli(&["exec", &name, "payments-api", "--", "sleep", "60"]);
    let sleeper = tokio::task::spawn_blocking(move || {
        let mut sleeper = sleeper;
        sleeper.stdin(Stdio::null()).output().expect("exec sleep")
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let revoked_at = Instant::now();
    let (status, _) = admin
        .post(&format!("/api/v1/requests/{name}/revoke"), json!({"reason": "done"}))
        .await;
    assert_eq!(status, 200);
    let out = tokio::time::timeout(Duration::from_secs(10), follower)
        .await
        .expect("logs -f ended")
        .expect("join");
    assert!(
        revoked_at.elapsed() < Duration::from_secs(5),
        "ended after {:?}",
        revoked_at.elapsed()
    );
    assert_eq!(out.status.code(), Some(8), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("janus: log stream ended:"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("GET /v1/payments/"), "{}", text(&out.stdout));
    assert!(
        !text(&out.stdout).contains("[log stream ended"),
        "the server's last line is not log"
    );
    let out = tokio::time::timeout(Duration::from_secs(10), sleeper)
        .await
        .expect("exec ended")
        .expect("join");
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("session ended:"), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("revoked"), "{}", text(&out.stderr));
}
