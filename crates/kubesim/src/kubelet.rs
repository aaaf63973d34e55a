//! The simulated kubelet: pods become Running at once, each with a working directory; exec processes are tracked per pod.
//!
//! There is one node, [`NODE_NAME`]. A new Pod gets a complete Running status (conditions, IPs,
//! container statuses) before it is stored, so clients that wait for readiness (`kubectl wait`,
//! controllers) see what a healthy cluster would show. Every exec session registers its process
//! group here; deleting the pod, or shutting the simulator down, SIGKILLs those groups.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::Cluster;
use crate::store::now_rfc3339;

/// The name of the single simulated node.
pub const NODE_NAME: &str = "kubesim-node";

/// The node's address, reported as `status.hostIP`.
pub const HOST_IP: &str = "127.0.0.1";

type PodKey = (String, String);

#[derive(Debug, Clone, Copy)]
struct Tracked {
    id: u64,
    pgid: i32,
    /// The session is over and the group was killed, but some member was still alive then. It stays
    /// tracked until the kernel has removed it, so [`Kubelet::active_processes`] never claims "gone"
    /// early, and pod deletion can still kill stragglers.
    ended: bool,
}

type ProcessTable = Arc<Mutex<HashMap<PodKey, Vec<Tracked>>>>;

fn lock(t: &ProcessTable) -> MutexGuard<'_, HashMap<PodKey, Vec<Tracked>>> {
    t.lock().unwrap_or_else(|e| e.into_inner())
}

/// Tracks the processes started by exec, so that deleting a pod ends them.
#[derive(Debug, Default)]
pub struct Kubelet {
    procs: ProcessTable,
    /// When each pod's processes were last killed, so a session that was being set up while its
    /// pod was deleted is killed at registration instead of outliving the pod.
    killed_at: Mutex<HashMap<PodKey, Instant>>,
    next_id: AtomicU64,
    next_ip: AtomicU32,
}

/// How long a pod deletion is remembered for sessions still starting up.
const KILL_MEMORY: Duration = Duration::from_secs(300);

impl Kubelet {
    /// Records a running exec process group of a pod, for a request accepted at `requested_at`. The
    /// group is SIGKILLed when the returned guard is dropped, so a session that ends in any way (even
    /// a panic) leaves nothing behind; and at once if the pod's processes were killed (the pod was
    /// deleted) after the request was accepted.
    pub fn register(&self, namespace: &str, pod: &str, pgid: i32, requested_at: Instant) -> ProcessGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let key = (namespace.to_string(), pod.to_string());
        let killed_since = self
            .killed_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .is_some_and(|t| *t >= requested_at);
        if killed_since {
            tracing::info!(
                namespace,
                pod,
                pgid,
                "pod went away while exec was starting; killing the process group"
            );
            kill_group(pgid);
        }
        lock(&self.procs)
            .entry(key.clone())
            .or_default()
            .push(Tracked { id, pgid, ended: false });
        tracing::debug!(namespace, pod, pgid, "exec process registered");
        ProcessGuard {
            procs: self.procs.clone(),
            key,
            id,
            pgid,
        }
    }

    /// The tracked groups of one pod (or of all pods), after forgetting ended groups that are empty.
    fn groups(&self, pod: Option<&PodKey>) -> Vec<(i32, usize)> {
        let snapshot: Vec<Tracked> = {
            let t = lock(&self.procs);
            match pod {
                Some(k) => t.get(k).cloned().unwrap_or_default(),
                None => t.values().flatten().copied().collect(),
            }
        };
        if snapshot.is_empty() {
            return Vec::new();
        }
        let pgids: Vec<i32> = snapshot.iter().map(|t| t.pgid).filter(|&g| !group_empty(g)).collect();
        let counts = if pgids.is_empty() {
            HashMap::new()
        } else {
            group_member_counts(&pgids)
        };
        let gone: Vec<u64> = snapshot
            .iter()
            .filter(|t| t.ended && counts.get(&t.pgid).copied().unwrap_or(0) == 0)
            .map(|t| t.id)
            .collect();
        if !gone.is_empty() {
            let mut t = lock(&self.procs);
            t.values_mut().for_each(|v| v.retain(|x| !gone.contains(&x.id)));
            t.retain(|_, v| !v.is_empty());
        }
        snapshot
            .iter()
            .filter(|t| !gone.contains(&t.id))
            .map(|t| (t.pgid, counts.get(&t.pgid).copied().unwrap_or(0)))
            .collect()
    }

    /// Kills every exec process of one pod.
    pub fn kill_pod(&self, namespace: &str, name: &str) {
        {
            let mut k = self.killed_at.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            k.retain(|_, t| now.duration_since(*t) < KILL_MEMORY);
            k.insert((namespace.to_string(), name.to_string()), now);
        }
        for (pgid, _) in self.groups(Some(&(namespace.to_string(), name.to_string()))) {
            tracing::info!(namespace, pod = name, pgid, "killing exec process group of the pod");
            kill_group(pgid);
        }
    }

    /// Kills every exec process (shutdown).
    pub fn kill_all(&self) {
        for (pgid, _) in self.groups(None) {
            kill_group(pgid);
        }
    }

    /// How many processes of this pod's exec sessions are alive (zombies not counted): every member of
    /// every tracked process group, so a shell's children count too, and killed processes count
    /// until the kernel has really removed them. 0 means nothing started by exec in this pod runs.
    pub fn active_processes(&self, namespace: &str, pod: &str) -> usize {
        self.groups(Some(&(namespace.to_string(), pod.to_string())))
            .iter()
            .map(|(_, n)| n)
            .sum()
    }

    /// The number of exec sessions of a pod that have not ended yet.
    pub fn sessions(&self, namespace: &str, pod: &str) -> usize {
        lock(&self.procs)
            .get(&(namespace.to_string(), pod.to_string()))
            .map_or(0, |v| v.iter().filter(|t| !t.ended).count())
    }

    /// The next pod IP: 10.244.x.y, deterministic in creation order.
    fn next_pod_ip(&self) -> String {
        let n = self.next_ip.fetch_add(1, Ordering::Relaxed);
        // 254 usable host numbers per /24; wraps after 65,024 pods, far more than any test creates.
        let x = (n / 254) % 254;
        let y = n % 254 + 1;
        format!("10.244.{x}.{y}")
    }
}

/// Keeps an exec process group registered with the [`Kubelet`]; dropping it kills the group.
#[derive(Debug)]
pub struct ProcessGuard {
    procs: ProcessTable,
    key: PodKey,
    id: u64,
    pgid: i32,
}

impl ProcessGuard {
    /// The registered process group id.
    pub fn pgid(&self) -> i32 {
        self.pgid
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        // Background children of a finished shell would otherwise outlive the session on the host.
        kill_group(self.pgid);
        let alive = group_alive(self.pgid);
        let mut t = lock(&self.procs);
        if let Some(v) = t.get_mut(&self.key) {
            if alive {
                v.iter_mut().filter(|x| x.id == self.id).for_each(|x| x.ended = true);
            } else {
                v.retain(|x| x.id != self.id);
            }
            if v.is_empty() {
                t.remove(&self.key);
            }
        }
    }
}

/// SIGKILLs a process group; a group that is already gone is fine.
pub fn kill_group(pgid: i32) {
    // pgid 0 or 1 would signal our own group or init's; never let a bad value get that far.
    if pgid <= 1 {
        tracing::warn!(pgid, "refusing to kill a suspicious process group");
        return;
    }
    match killpg(Pid::from_raw(pgid), Signal::SIGKILL) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pgid, error = %e, "killing exec process group failed"),
    }
}

/// Waits until no live process is left in a process group (after it was killed), so that a session
/// ends only once what it ran is really gone.
pub async fn wait_group_gone(pgid: i32, timeout: std::time::Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    while group_alive(pgid) {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(pgid, "processes of a killed exec group are still alive");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Whether no process at all is left in a group, zombies included (signal 0 finds none): then there is
/// nothing to count. A count reads every process on the host from /proc, in blocking calls on the
/// runtime's threads; a session's end counted its group at least twice, so 2,000 sessions ending at once
/// (a revoke in the web-replicas benchmark, issue 19) were millions of reads that starved the API
/// server's other work. Most ended groups are empty by then: the session reaped its leader.
fn group_empty(pgid: i32) -> bool {
    pgid > 1 && matches!(killpg(Pid::from_raw(pgid), None), Err(nix::errno::Errno::ESRCH))
}

/// Whether a live (non-zombie) process is left in a group: no /proc scan when signal 0 finds none.
fn group_alive(pgid: i32) -> bool {
    !group_empty(pgid) && group_member_counts(&[pgid]).get(&pgid).copied().unwrap_or(0) > 0
}

#[cfg(test)]
thread_local! {
    /// The /proc scans [`group_member_counts`] made on this thread.
    static PROC_SCANS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Live (non-zombie) members per process group, for the given groups. Reads /proc; where there is
/// none, a group that still accepts signal 0 counts as one process.
fn group_member_counts(groups: &[i32]) -> HashMap<i32, usize> {
    #[cfg(test)]
    PROC_SCANS.with(|c| c.set(c.get() + 1));
    let mut counts = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        for &g in groups {
            if killpg(Pid::from_raw(g), None).is_ok() {
                counts.insert(g, 1);
            }
        }
        return counts;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        // The process may exit between listing and reading; that is just "not counted".
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some((state, pgrp)) = parse_stat(&stat)
            && state != 'Z'
            && state != 'X'
            && groups.contains(&pgrp)
        {
            *counts.entry(pgrp).or_insert(0) += 1;
        }
    }
    counts
}

/// State and process group from a `/proc/PID/stat` line. The command name may contain spaces and
/// parentheses, so fields are counted after the last `)`.
fn parse_stat(stat: &str) -> Option<(char, i32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

/// The pod's working directory (its "filesystem").
pub fn pod_dir(cluster: &Cluster, namespace: &str, name: &str) -> PathBuf {
    cluster.config.workdir.join("pods").join(namespace).join(name)
}

/// Whether a name can be used as one path component without escaping the work directory. API
/// validation should already guarantee this; the kubelet does not rely on it.
fn safe_component(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('\0')
}

/// Creates the pod's working directory (idempotent); an error if the names are unusable as paths.
pub fn ensure_pod_dir(cluster: &Cluster, namespace: &str, name: &str) -> std::io::Result<PathBuf> {
    if !safe_component(namespace) || !safe_component(name) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("pod {namespace}/{name} has a name that cannot be a directory"),
        ));
    }
    let dir = pod_dir(cluster, namespace, name);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Called before a new Pod is stored: fills `spec.nodeName` and a Running `status`.
pub fn admit_pod(cluster: &Cluster, pod: &mut Value) {
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
    let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
    if !pod["spec"].is_object() {
        pod["spec"] = json!({});
    }
    if pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty) {
        pod["spec"]["nodeName"] = json!(NODE_NAME);
    }
    let host_network = pod["spec"]["hostNetwork"].as_bool().unwrap_or(false);
    let pod_ip = if host_network {
        HOST_IP.to_string()
    } else {
        cluster.kubelet.next_pod_ip()
    };
    pod["status"] = running_status(&pod["spec"], &pod_ip, &now_rfc3339());
    if let Err(e) = ensure_pod_dir(cluster, &namespace, &name) {
        tracing::warn!(namespace, pod = name, error = %e, "cannot create the pod's working directory");
    }
}

/// The status a healthy kubelet reports for a pod whose containers all started.
fn running_status(spec: &Value, pod_ip: &str, now: &str) -> Value {
    let condition = |t: &str| json!({"type": t, "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
    let containers = spec["containers"].as_array().map(Vec::as_slice).unwrap_or_default();
    let init = spec["initContainers"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut status = json!({
        "phase": "Running",
        "conditions": [
            condition("PodReadyToStartContainers"),
            condition("Initialized"),
            condition("Ready"),
            condition("ContainersReady"),
            condition("PodScheduled"),
        ],
        "hostIP": HOST_IP,
        "hostIPs": [{"ip": HOST_IP}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": now,
        "qosClass": qos_class(containers, init),
        "containerStatuses": containers.iter().map(|c| running_container(c, now)).collect::<Vec<_>>(),
    });
    if !init.is_empty() {
        status["initContainerStatuses"] = json!(init.iter().map(|c| init_container(c, now)).collect::<Vec<_>>());
    }
    status
}

/// The status of a container that started at `now` (also used for ephemeral containers).
pub(crate) fn running_container_status(c: &Value, now: &str) -> Value {
    running_container(c, now)
}

fn running_container(c: &Value, now: &str) -> Value {
    let image = c["image"].as_str().unwrap_or_default();
    json!({
        "name": c["name"],
        "ready": true,
        "started": true,
        "restartCount": 0,
        "image": image,
        "imageID": image_id(image),
        "containerID": container_id(),
        "lastState": {},
        "state": {"running": {"startedAt": now}},
    })
}

fn init_container(c: &Value, now: &str) -> Value {
    // A sidecar (restartPolicy Always) keeps running; a classic init container has completed.
    if c["restartPolicy"] == "Always" {
        return running_container(c, now);
    }
    let image = c["image"].as_str().unwrap_or_default();
    let id = container_id();
    json!({
        "name": c["name"],
        "ready": true,
        "started": false,
        "restartCount": 0,
        "image": image,
        "imageID": image_id(image),
        "containerID": id,
        "lastState": {},
        "state": {"terminated": {
            "exitCode": 0,
            "reason": "Completed",
            "startedAt": now,
            "finishedAt": now,
            "containerID": id,
        }},
    })
}

/// `kubesim://` and 64 hex digits, like a container runtime's id.
fn container_id() -> String {
    format!(
        "kubesim://{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// A stable fake digest for an image name, so the same image always has the same imageID.
fn image_id(image: &str) -> String {
    let repo = image.split('@').next().unwrap_or(image);
    let repo = match repo.rfind(':') {
        // A colon after the last slash is a tag, not a registry port.
        Some(i) if !repo[i..].contains('/') => &repo[..i],
        _ => repo,
    };
    let mut digest = String::with_capacity(64);
    for seed in 0u64..4 {
        // FNV-1a, four differently seeded rounds for 256 bits of hex; not cryptographic, only stable.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for b in image.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        digest.push_str(&format!("{h:016x}"));
    }
    format!("{repo}@sha256:{digest}")
}

/// QoS class as Kubernetes derives it: no requests or limits at all → BestEffort; cpu and memory
/// limits on every container with requests equal to them → Guaranteed; otherwise Burstable.
/// Quantities are compared as written ("1" and "1000m" differ here), which is enough for tests.
fn qos_class(containers: &[Value], init: &[Value]) -> &'static str {
    let all: Vec<&Value> = containers.iter().chain(init.iter()).collect();
    let resources = |c: &Value, kind: &str, res: &str| {
        c["resources"][kind][res]
            .as_str()
            .map(str::to_string)
            .or_else(|| c["resources"][kind][res].as_f64().map(|f| f.to_string()))
    };
    let any = all.iter().any(|c| {
        ["requests", "limits"]
            .iter()
            .any(|k| c["resources"][*k].as_object().is_some_and(|m| !m.is_empty()))
    });
    if !any {
        return "BestEffort";
    }
    let guaranteed = all.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let limit = resources(c, "limits", r);
            let request = resources(c, "requests", r).or_else(|| limit.clone());
            limit.is_some() && limit == request
        })
    });
    if guaranteed { "Guaranteed" } else { "Burstable" }
}

/// Called after a Pod left the store.
pub fn pod_deleted(cluster: &Cluster, namespace: &str, name: &str) {
    cluster.kubelet.kill_pod(namespace, name);
    cluster.ephemeral.remove_pod(namespace, name);
    // A workload replaces a pod it lost.
    cluster.workloads.poke();
    // Dropping the log senders ends every `logs -f` of this pod.
    cluster.logs.remove_pod(namespace, name);
    if safe_component(namespace) && safe_component(name) {
        let dir = pod_dir(cluster, namespace, name);
        remove_dir_logged(&dir);
    }
}

fn remove_dir_logged(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the pod's working directory")
        }
    }
}

/// Helpers for this crate's unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::Arc;

    use crate::Cluster;

    /// A cluster whose work directory is removed when the test ends (even by panic).
    pub(crate) struct TestCluster {
        cluster: Arc<Cluster>,
        _workdir: tempfile::TempDir,
    }

    impl std::ops::Deref for TestCluster {
        type Target = Arc<Cluster>;
        fn deref(&self) -> &Arc<Cluster> {
            &self.cluster
        }
    }

    /// A fresh cluster in a temporary work directory.
    pub(crate) fn cluster() -> TestCluster {
        let dir = tempfile::Builder::new().prefix("kubesim-test-").tempdir().unwrap();
        let cluster = Cluster::new(crate::SimConfig::new("t", "t", dir.path().to_path_buf())).unwrap();
        TestCluster { cluster, _workdir: dir }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// An ended group whose processes are all gone costs no /proc scan; one with a live member is
    /// still counted.
    #[tokio::test(flavor = "current_thread")]
    async fn a_group_that_is_gone_is_not_looked_for_in_proc() {
        use std::os::unix::process::CommandExt as _;
        let mut done = std::process::Command::new("sh")
            .args(["-c", "exit 0"])
            .process_group(0)
            .spawn()
            .expect("sh");
        let pgid = i32::try_from(done.id()).expect("pid");
        done.wait().expect("wait");
        let scans = PROC_SCANS.with(|c| c.get());
        wait_group_gone(pgid, Duration::from_secs(1)).await;
        assert_eq!(
            PROC_SCANS.with(|c| c.get()),
            scans,
            "an empty group was looked for in /proc"
        );

        let mut live = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .expect("sleep");
        let pgid = i32::try_from(live.id()).expect("pid");
        assert!(!group_empty(pgid));
        assert_eq!(group_member_counts(&[pgid]).get(&pgid).copied(), Some(1));
        kill_group(pgid);
        live.wait().expect("wait");
        assert!(group_empty(pgid));
    }

    #[test]
    fn parse_stat_handles_odd_command_names() {
        let line = "4242 (we (ird) name) S 1 4240 4240 0 -1 4194560 100 0 0 0";
        assert_eq!(parse_stat(line), Some(('S', 4240)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn pod_ips_are_deterministic_and_distinct() {
        let k = Kubelet::default();
        assert_eq!(k.next_pod_ip(), "10.244.0.1");
        assert_eq!(k.next_pod_ip(), "10.244.0.2");
        for _ in 2..254 {
            k.next_pod_ip();
        }
        assert_eq!(k.next_pod_ip(), "10.244.1.1");
    }

    #[test]
    fn status_has_conditions_and_container_statuses() {
        let spec = json!({
            "containers": [{"name": "a", "image": "nginx:1.27"}, {"name": "b", "image": "busybox"}],
            "initContainers": [{"name": "init", "image": "busybox"}],
        });
        let st = running_status(&spec, "10.244.0.9", "2025-01-01T00:00:00Z");
        assert_eq!(st["phase"], "Running");
        assert_eq!(st["podIP"], "10.244.0.9");
        assert_eq!(st["hostIP"], HOST_IP);
        assert_eq!(st["qosClass"], "BestEffort");
        for t in ["Initialized", "Ready", "ContainersReady", "PodScheduled"] {
            let c = st["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == t)
                .unwrap();
            assert_eq!(c["status"], "True", "{t}");
            assert_eq!(c["lastTransitionTime"], "2025-01-01T00:00:00Z");
        }
        let cs = st["containerStatuses"].as_array().unwrap();
        assert_eq!(cs.len(), 2);
        assert_eq!(cs[0]["name"], "a");
        assert_eq!(cs[0]["ready"], true);
        assert_eq!(cs[0]["started"], true);
        assert_eq!(cs[0]["restartCount"], 0);
        assert_eq!(cs[0]["image"], "nginx:1.27");
        assert!(cs[0]["imageID"].as_str().unwrap().starts_with("nginx@sha256:"));
        assert_eq!(cs[0]["imageID"].as_str().unwrap().len(), "nginx@sha256:".len() + 64);
        let id = cs[0]["containerID"].as_str().unwrap();
        assert!(
            id.starts_with("kubesim://") && id.len() == "kubesim://".len() + 64,
            "{id}"
        );
        assert_ne!(cs[0]["containerID"], cs[1]["containerID"]);
        assert_eq!(cs[0]["state"]["running"]["startedAt"], "2025-01-01T00:00:00Z");
        let init = st["initContainerStatuses"].as_array().unwrap();
        assert_eq!(init[0]["state"]["terminated"]["reason"], "Completed");
        assert_eq!(init[0]["state"]["terminated"]["exitCode"], 0);
    }

    #[test]
    fn image_ids_are_stable_and_strip_tags_not_ports() {
        assert_eq!(image_id("nginx:1"), image_id("nginx:1"));
        assert_ne!(image_id("nginx:1"), image_id("nginx:2"));
        assert!(image_id("localhost:5000/app").starts_with("localhost:5000/app@sha256:"));
        assert!(image_id("localhost:5000/app:v1").starts_with("localhost:5000/app@sha256:"));
    }

    #[test]
    fn qos_classes() {
        let be = [json!({"name": "a"})];
        assert_eq!(qos_class(&be, &[]), "BestEffort");
        let burst = [json!({"name": "a", "resources": {"requests": {"cpu": "100m"}}})];
        assert_eq!(qos_class(&burst, &[]), "Burstable");
        let g = [json!({"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}})];
        assert_eq!(qos_class(&g, &[]), "Guaranteed");
    }

    #[test]
    fn guard_kills_group_and_unregisters() {
        let k = Kubelet::default();
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 100 & sleep 100; wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = i32::try_from(child.id()).unwrap();
        let guard = k.register("ns", "p", pgid, Instant::now());
        assert_eq!(k.sessions("ns", "p"), 1);
        let deadline = Instant::now() + Duration::from_secs(5);
        // sh plus its two sleeps, once the shell has forked them.
        while k.active_processes("ns", "p") < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(k.active_processes("ns", "p"), 3);
        k.kill_pod("ns", "p");
        let status = child.wait().unwrap();
        assert!(!status.success());
        while k.active_processes("ns", "p") > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(k.active_processes("ns", "p"), 0);
        drop(guard);
        assert_eq!(k.sessions("ns", "p"), 0);
        assert_eq!(k.active_processes("other", "p"), 0);
    }

    #[test]
    fn safe_components() {
        assert!(safe_component("my-pod"));
        assert!(!safe_component(".."));
        assert!(!safe_component("a/b"));
        assert!(!safe_component(""));
    }

    use std::os::unix::process::CommandExt;
}
