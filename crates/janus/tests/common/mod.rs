//! Helpers shared by the integration tests that run the real `janus demo` binary (tests/demo.rs, cli.rs,
//! cli_shell.rs). Each test binary uses a part of them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `janus demo` and what it printed; stopped (SIGINT, then kill after 15 s) when dropped.
pub struct Demo {
    child: Child,
    /// The web's URL.
    pub url: String,
    /// The `admin` login's password.
    pub admin: String,
    /// The `engineer` login's password.
    pub engineer: String,
    /// The admin kubeconfig the `kubectl --kubeconfig …` line names.
    pub kubeconfig: String,
    /// The progress lines (`[n/7] …`) printed while starting.
    pub steps: Vec<String>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
    }
}

/// A TCP port nothing listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Starts `janus demo --short-ttls` on a free port with `data_dir`, and reads the URL, logins and kubeconfig
/// it prints up to "Ctrl-C stops the demo".
pub fn start_demo(data_dir: &Path) -> Demo {
    let mut child = Command::new(env!("CARGO_BIN_EXE_janus"))
        .args(["demo", "--port", &free_port().to_string(), "--short-ttls", "--data-dir"])
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("janus demo starts");
    let out = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(out).lines();
    let (mut url, mut admin, mut engineer, mut kubeconfig) = (None, None, None, None);
    let mut steps = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("line");
        if line.starts_with('[') {
            steps.push(line.clone());
        }
        if let Some(u) = line.strip_prefix("k8s-janus demo is running: ") {
            url = Some(u.trim().to_string());
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first() {
            Some(&"admin") => admin = words.last().map(|s| s.to_string()),
            Some(&"engineer") => engineer = words.last().map(|s| s.to_string()),
            _ => {}
        }
        if line.trim_start().starts_with("kubectl --kubeconfig") && kubeconfig.is_none() {
            kubeconfig = words.get(2).map(|s| s.to_string());
        }
        if line.contains("Ctrl-C stops the demo") {
            break;
        }
    }
    // Keep draining stdout so the demo never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Demo {
        child,
        url: url.expect("URL printed"),
        admin: admin.expect("admin password printed"),
        engineer: engineer.expect("engineer password printed"),
        kubeconfig: kubeconfig.expect("kubectl line printed"),
        steps,
    }
}
