//! Ephemeral containers (`pods/ephemeralcontainers`) and `pods/attach`.
//!
//! The API side follows kube-apiserver: `EphemeralContainersREST` in
//! `pkg/registry/core/pod/storage/storage.go` with the strategy of `pkg/registry/core/pod/strategy.go`
//! (`dropNonEphemeralContainerUpdates`: only `spec.ephemeralContainers` changes through the
//! subresource) and the checks of `ValidatePodEphemeralContainersUpdate` /
//! `validateEphemeralContainers` in `pkg/apis/core/validation/validation.go` (added, never changed
//! or removed; names unique across all containers; image required; `targetContainerName` names a
//! regular or init container; ports, probes, resources, lifecycle, resizePolicy and restartPolicy
//! refused).
//!
//! The kubelet side starts every added ephemeral container as a real local process (its `command`
//! and `args`, `sh` when it has none, as a debug image's default command usually is), in a PTY when
//! `tty` and with an open stdin when `stdin`, reports it `running` in
//! `status.ephemeralContainerStatuses` at once and `terminated` with its exit code when it ends.
//! Its output goes to the container's log and to every client attached with `pods/attach`, whose
//! input goes to the process. Attaching to a regular container (kubesim runs no process for those)
//! streams what is appended to its log from then on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::http::HeaderValue;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::Cluster;
use crate::errors::{ApiError, ApiResult};
use crate::exec::{
    self, DEFAULT_TERM_SIZE, ExecProcess, ProcessSpec, Protocol, Pty, STDOUT_CHANNEL, V4_PROTOCOL, V5_PROTOCOL,
    encode_frame,
};
use crate::kubelet::ensure_pod_dir;
use crate::resources::GroupResource;
use crate::store::{now_rfc3339, ns_name};

/// Fields an ephemeral container may set (`allowedEphemeralContainerFields` upstream); any other
/// field with a non-empty value is refused.
const ALLOWED_FIELDS: [&str; 17] = [
    "name",
    "image",
    "command",
    "args",
    "workingDir",
    "envFrom",
    "env",
    "volumeMounts",
    "volumeDevices",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "imagePullPolicy",
    "securityContext",
    "stdin",
    "stdinOnce",
    "tty",
    "targetContainerName",
];

/// Output chunks kept for a slow attached client before it skips ahead.
const ATTACH_BACKLOG: usize = 1024;

/// The subresource's name.
pub const SUBRESOURCE: &str = "ephemeralcontainers";

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
    }
}

/// The defaults the API server's decoding gives a container (`SetDefaults_Container`): so an
/// existing ephemeral container sent back without them still compares equal.
fn apply_defaults(c: &mut Value) {
    if c["terminationMessagePath"].as_str().is_none_or(str::is_empty) {
        c["terminationMessagePath"] = json!("/dev/termination-log");
    }
    if c["terminationMessagePolicy"].as_str().is_none_or(str::is_empty) {
        c["terminationMessagePolicy"] = json!("File");
    }
    if c["imagePullPolicy"].as_str().is_none_or(str::is_empty) {
        let image = c["image"].as_str().unwrap_or_default();
        let tag = image.rsplit('/').next().unwrap_or(image);
        let latest = !image.contains('@') && tag.split_once(':').is_none_or(|(_, t)| t == "latest");
        c["imagePullPolicy"] = json!(if latest { "Always" } else { "IfNotPresent" });
    }
}

fn names_of(list: &Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect()
}

/// Admission of an update through `pods/ephemeralcontainers`: `new` already holds the stored pod
/// with only `spec.ephemeralContainers` taken from the request. Defaults the containers and refuses
/// what `ValidatePodEphemeralContainersUpdate` refuses, with its messages.
pub fn admit_update(current: &Value, new: &mut Value) -> ApiResult<()> {
    let name = new["metadata"]["name"].as_str().unwrap_or_default().to_string();
    if let Some(list) = new["spec"]["ephemeralContainers"].as_array_mut() {
        list.iter_mut().for_each(apply_defaults);
    }
    let mut causes: Vec<(String, String)> = Vec::new();
    if current["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string() {
        causes.push((
            String::new(),
            "Forbidden: static pods do not support ephemeral containers".into(),
        ));
        return Err(ApiError::invalid("Pod", "", &name, causes));
    }
    if !new["spec"]["ephemeralContainers"].is_null() && !new["spec"]["ephemeralContainers"].is_array() {
        return Err(ApiError::bad_request(
            "spec.ephemeralContainers must be a list of containers",
        ));
    }
    let regular: Vec<String> = names_of(&new["spec"]["containers"])
        .into_iter()
        .chain(names_of(&new["spec"]["initContainers"]))
        .collect();
    let mut seen = regular.clone();
    let list = new["spec"]["ephemeralContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (i, ec) in list.iter().enumerate() {
        let path = format!("spec.ephemeralContainers[{i}]");
        if !ec.is_object() {
            causes.push((path, "Invalid value: must be a container".into()));
            continue;
        }
        match ec["name"].as_str() {
            None | Some("") => causes.push((format!("{path}.name"), "Required value".into())),
            Some(n) if !crate::api::is_dns_label(n) => causes.push((
                format!("{path}.name"),
                format!(
                    "Invalid value: \"{n}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
                ),
            )),
            Some(n) if seen.iter().any(|s| s == n) => {
                causes.push((format!("{path}.name"), format!("Duplicate value: \"{n}\"")));
            }
            Some(n) => seen.push(n.to_string()),
        }
        if ec["image"].as_str().is_none_or(str::is_empty) {
            causes.push((format!("{path}.image"), "Required value".into()));
        }
        if let Some(t) = ec["targetContainerName"].as_str().filter(|t| !t.is_empty())
            && !regular.iter().any(|r| r == t)
        {
            causes.push((format!("{path}.targetContainerName"), format!("Not found: \"{t}\"")));
        }
        if let Some(fields) = ec.as_object() {
            for (k, v) in fields {
                if !ALLOWED_FIELDS.contains(&k.as_str()) && !is_empty_value(v) {
                    causes.push((
                        format!("{path}.{k}"),
                        "Forbidden: cannot be set for an Ephemeral Container".into(),
                    ));
                }
            }
        }
        for (j, vm) in ec["volumeMounts"].as_array().into_iter().flatten().enumerate() {
            if vm["subPath"].as_str().is_some_and(|s| !s.is_empty()) {
                causes.push((
                    format!("{path}.volumeMounts[{j}].subPath"),
                    "Forbidden: cannot be set for an Ephemeral Container".into(),
                ));
            }
        }
    }
    // Existing ones stay exactly as they are; the patch order is not kept, so by name.
    let by_name: HashMap<&str, &Value> = list.iter().filter_map(|c| c["name"].as_str().map(|n| (n, c))).collect();
    for old in current["spec"]["ephemeralContainers"].as_array().into_iter().flatten() {
        let old_name = old["name"].as_str().unwrap_or_default();
        match by_name.get(old_name) {
            None => causes.push((
                "spec.ephemeralContainers".into(),
                format!("Forbidden: existing ephemeral containers \"{old_name}\" may not be removed\n"),
            )),
            Some(new_c) if *new_c != old => causes.push((
                "spec.ephemeralContainers".into(),
                format!(
                    "Forbidden: existing ephemeral containers \"{old_name}\" may not be changed\n{}",
                    describe_change(old, new_c)
                ),
            )),
            Some(_) => {}
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid("Pod", "", &name, causes))
    }
}

/// A short stand-in for upstream's `cmp.Diff`: the fields that differ, old and new.
fn describe_change(old: &Value, new: &Value) -> String {
    let mut keys: Vec<&String> = old
        .as_object()
        .into_iter()
        .flatten()
        .chain(new.as_object().into_iter().flatten())
        .map(|(k, _)| k)
        .collect();
    keys.sort();
    keys.dedup();
    keys.iter()
        .filter(|k| old[k.as_str()] != new[k.as_str()])
        .map(|k| format!("  {k}: {} -> {}", old[k.as_str()], new[k.as_str()]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A plain pod update (no subresource) may not touch `spec.ephemeralContainers`: upstream's
/// `ValidatePodUpdate` refuses it as any other spec change it does not allow.
pub fn plain_update_changes_them(current: &Value, new: &Value) -> bool {
    let norm = |v: &Value| match &v["spec"]["ephemeralContainers"] {
        Value::Array(a) if a.is_empty() => Value::Null,
        other => other.clone(),
    };
    norm(current) != norm(new)
}

/// A running ephemeral container's process, as attach sees it.
#[derive(Debug)]
struct Running {
    /// Input for the process (when the container has `stdin`).
    stdin: Option<mpsc::Sender<Bytes>>,
    /// Output for attached clients.
    output: broadcast::Sender<Bytes>,
    /// The terminal (when `tty`).
    pty: Option<Arc<Pty>>,
    /// Cancelled when the process has ended and its output is drained.
    ended: CancellationToken,
}

type ContainerKey = (String, String, String);

/// The ephemeral containers the simulated kubelet runs.
#[derive(Debug, Default)]
pub struct Containers {
    running: Mutex<HashMap<ContainerKey, Arc<Running>>>,
}

impl Containers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ContainerKey, Arc<Running>>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, namespace: &str, pod: &str, container: &str) -> Option<Arc<Running>> {
        self.lock()
            .get(&(namespace.to_string(), pod.to_string(), container.to_string()))
            .cloned()
    }

    /// Forgets a deleted pod's containers (their processes are killed with the pod's groups).
    pub fn remove_pod(&self, namespace: &str, pod: &str) {
        self.lock().retain(|(ns, p, _), _| !(ns == namespace && p == pod));
    }
}

fn pods() -> GroupResource {
    GroupResource::new("", "pods")
}

/// Writes one ephemeral container status of the stored pod (if that pod is still the same one).
fn set_status(cluster: &Cluster, namespace: &str, pod: &str, uid: &str, status: Value) {
    let result = cluster.store.update_latest(&pods(), namespace, pod, |cur| {
        if cur["metadata"]["uid"].as_str() != Some(uid) {
            return None;
        }
        let mut new = cur.clone();
        let name = status["name"].clone();
        let mut list = new["status"]["ephemeralContainerStatuses"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        list.retain(|s| s["name"] != name);
        list.push(status.clone());
        new["status"]["ephemeralContainerStatuses"] = json!(list);
        Some(new)
    });
    if let Err(e) = result {
        tracing::warn!(namespace, pod, error = %e, "cannot write an ephemeral container status");
    }
}

fn terminated(base: &Value, code: i32, reason: &str, message: Option<String>, started: &str) -> Value {
    let mut s = base.clone();
    let mut t = json!({
        "exitCode": code,
        "reason": reason,
        "startedAt": started,
        "finishedAt": now_rfc3339(),
        "containerID": base["containerID"],
    });
    if let Some(m) = message {
        t["message"] = json!(m);
    }
    s["state"] = json!({"terminated": t});
    s
}

/// After a pod write: starts the ephemeral containers of a running pod that have no status yet,
/// as the kubelet's `syncPod` does for every ephemeral container without one.
pub fn sync(cluster: &Arc<Cluster>, pod: &Value) {
    if pod["metadata"]["deletionTimestamp"].is_string() || pod["status"]["phase"] != "Running" {
        return;
    }
    let (namespace, name) = ns_name(pod);
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    let started: Vec<String> = names_of(&pod["status"]["ephemeralContainerStatuses"]);
    for ec in pod["spec"]["ephemeralContainers"].as_array().into_iter().flatten() {
        let Some(cname) = ec["name"].as_str() else { continue };
        if started.iter().any(|s| s == cname) || cluster.ephemeral.get(&namespace, &name, cname).is_some() {
            continue;
        }
        start(cluster, pod, &namespace, &name, &uid, ec);
    }
}

fn start(cluster: &Arc<Cluster>, pod: &Value, namespace: &str, name: &str, uid: &str, ec: &Value) {
    let cname = ec["name"].as_str().unwrap_or_default().to_string();
    let now = now_rfc3339();
    let mut base = crate::kubelet::running_container_status(ec, &now);
    // Ephemeral containers are never ready (they take no part in the pod's readiness).
    base["ready"] = json!(false);
    let tty = ec["tty"].as_bool().unwrap_or(false);
    let stdin = ec["stdin"].as_bool().unwrap_or(false);
    let mut argv: Vec<String> = ec["command"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(ec["args"].as_array().into_iter().flatten())
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect();
    if ec["command"].as_array().is_none_or(Vec::is_empty) {
        // No image to take an entrypoint from: a debug image's default is its shell.
        argv.insert(0, "sh".into());
    }
    let cwd = match ensure_pod_dir(cluster, namespace, name) {
        Ok(d) => d,
        Err(e) => {
            let msg = format!("cannot prepare the pod's working directory: {e}");
            set_status(
                cluster,
                namespace,
                name,
                uid,
                terminated(&base, 128, "StartError", Some(msg), &now),
            );
            return;
        }
    };
    let mut env = exec::process_env(pod, &cname, tty);
    env.push(("HOME".into(), cwd.display().to_string()));
    let spec = ProcessSpec {
        argv: argv.clone(),
        cwd,
        env,
        stdin,
        stdout: true,
        stderr: true,
        tty: tty.then_some(DEFAULT_TERM_SIZE),
    };
    let requested_at = std::time::Instant::now();
    let mut proc = match ExecProcess::spawn(&spec) {
        Ok(p) => p,
        Err(e) => {
            let program = argv.first().map(String::as_str).unwrap_or_default();
            let msg = format!(
                "failed to create containerd task: OCI runtime create failed: {}",
                exec::spawn_error_message(program, &e)
            );
            tracing::info!(namespace, pod = name, container = cname, error = %e, "ephemeral container failed to start");
            set_status(
                cluster,
                namespace,
                name,
                uid,
                terminated(&base, 128, "StartError", Some(msg), &now),
            );
            return;
        }
    };
    let guard = cluster.kubelet.register(namespace, name, proc.pgid(), requested_at);
    let (out_tx, _) = broadcast::channel::<Bytes>(ATTACH_BACKLOG);
    let (in_tx, mut in_rx) = mpsc::channel::<Bytes>(16);
    let running = Arc::new(Running {
        stdin: stdin.then_some(in_tx),
        output: out_tx.clone(),
        pty: proc.pty(),
        ended: CancellationToken::new(),
    });
    cluster.ephemeral.lock().insert(
        (namespace.to_string(), name.to_string(), cname.clone()),
        running.clone(),
    );
    set_status(cluster, namespace, name, uid, base.clone());
    tracing::info!(namespace, pod = name, container = cname, argv = ?argv, tty, "ephemeral container started");

    if let Some(mut input) = proc.stdin.take() {
        tokio::spawn(async move {
            while let Some(data) = in_rx.recv().await {
                if input.write_all(&data).await.is_err() {
                    return;
                }
            }
        });
    }
    let mut pumps = tokio::task::JoinSet::new();
    for out in [proc.stdout.take(), proc.stderr.take()].into_iter().flatten() {
        let (cluster, out_tx) = (cluster.clone(), out_tx.clone());
        let (ns, pod, c) = (namespace.to_string(), name.to_string(), cname.clone());
        pumps.spawn(async move {
            let mut out = out;
            let mut buf = vec![0u8; 32 * 1024];
            let mut partial: Vec<u8> = Vec::new();
            loop {
                let n = match out.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                // No one attached is the normal case.
                let _ = out_tx.send(Bytes::copy_from_slice(&buf[..n]));
                partial.extend_from_slice(&buf[..n]);
                while let Some(i) = partial.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = partial.drain(..=i).collect();
                    let text = String::from_utf8_lossy(&line);
                    cluster.logs.append(&ns, &pod, &c, text.trim_end_matches(['\n', '\r']));
                }
            }
            if !partial.is_empty() {
                cluster
                    .logs
                    .append(&ns, &pod, &c, String::from_utf8_lossy(&partial).trim_end_matches('\r'));
            }
        });
    }
    let cluster = cluster.clone();
    let (namespace, name, uid) = (namespace.to_string(), name.to_string(), uid.to_string());
    tokio::spawn(async move {
        let status = proc.wait().await;
        // Background children would hold the output open; the container is over.
        proc.kill_group();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while pumps.join_next().await.is_some() {}
        })
        .await;
        drop(guard);
        let (code, reason) = match status {
            Ok(s) if s.success() => (0, "Completed"),
            Ok(s) => (exec::exit_code(s), "Error"),
            Err(_) => (128, "Error"),
        };
        tracing::info!(
            namespace,
            pod = name,
            container = cname,
            code,
            "ephemeral container exited"
        );
        set_status(
            &cluster,
            &namespace,
            &name,
            &uid,
            terminated(&base, code, reason, None, &now),
        );
        running.ended.cancel();
    });
}

/// `pods/attach` query parameters.
#[derive(Debug, Clone, Copy)]
struct AttachOptions {
    stdin: bool,
    stdout: bool,
    stderr: bool,
}

/// `GET pods/{name}/attach` (WebSocket, v5/v4 channel protocol): validates like the API server and
/// kubelet, then connects the client to the container's process.
pub fn attach(
    cluster: Arc<Cluster>,
    pod: Value,
    query: Vec<(String, String)>,
    ws: WebSocketUpgrade,
) -> ApiResult<Response> {
    let (namespace, name, container, opts) = validate_attach(&pod, &query)?;
    let offered: Vec<&HeaderValue> = ws.requested_protocols().collect();
    let protocol = Protocol::negotiate(offered.iter().filter_map(|h| h.to_str().ok())).ok_or_else(|| {
        let offered: Vec<&str> = offered.iter().filter_map(|h| h.to_str().ok()).collect();
        ApiError::bad_request(format!(
            "requested protocol(s) are not supported: [{}]; supports [{V5_PROTOCOL} {V4_PROTOCOL}]",
            offered.join(" ")
        ))
    })?;
    let is_ephemeral = names_of(&pod["spec"]["ephemeralContainers"]).contains(&container);
    let source = if is_ephemeral {
        match cluster.ephemeral.get(&namespace, &name, &container) {
            Some(r) if !r.ended.is_cancelled() => Source::Process(r),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "container {container} is not running in pod {name}"
                )));
            }
        }
    } else {
        Source::Log
    };
    tracing::info!(namespace, pod = name, container, protocol = protocol.name(), "attach");
    Ok(ws.protocols([protocol.name()]).on_upgrade(move |socket| async move {
        let (sink, stream) = socket.split();
        run_attach(
            cluster, namespace, name, container, source, protocol, opts, sink, stream,
        )
        .await;
    }))
}

/// Validation of an attach request, in the order the API server and kubelet apply it.
fn validate_attach(pod: &Value, query: &[(String, String)]) -> ApiResult<(String, String, String, AttachOptions)> {
    let (namespace, name) = ns_name(pod);
    let requested = query
        .iter()
        .find(|(k, _)| k == "container")
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty());
    let container = exec::select_container(pod, requested)?;
    let opts = AttachOptions {
        stdin: exec::query_bool(query, "stdin"),
        stdout: exec::query_bool(query, "stdout"),
        stderr: exec::query_bool(query, "stderr"),
    };
    if !opts.stdin && !opts.stdout && !opts.stderr {
        return Err(ApiError::bad_request(
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
    if phase != "Running" {
        return Err(ApiError::bad_request(format!(
            "pod {name} is not running, current phase is {phase}"
        )));
    }
    Ok((namespace, name, container, opts))
}

/// The answer to an attach that is not a WebSocket upgrade (SPDY): the validation error if there is
/// one, so kubectl shows the server's reason, else a 400 naming what is served.
pub fn reject_non_websocket(pod: &Value, query: &[(String, String)]) -> ApiError {
    match validate_attach(pod, query) {
        Err(e) => e,
        Ok(_) => ApiError::bad_request(format!(
            "Upgrade request required: kubesim serves attach over WebSocket only ({V5_PROTOCOL} or {V4_PROTOCOL}; kubectl 1.30 or newer)"
        )),
    }
}

enum Source {
    /// An ephemeral container's process.
    Process(Arc<Running>),
    /// A regular container: its log from now on.
    Log,
}

#[allow(clippy::too_many_arguments, reason = "one session's pieces, passed once")]
async fn run_attach<Si, St>(
    cluster: Arc<Cluster>,
    namespace: String,
    pod: String,
    container: String,
    source: Source,
    protocol: Protocol,
    opts: AttachOptions,
    mut sink: Si,
    stream: St,
) where
    Si: futures::Sink<Message> + Unpin + Send + 'static,
    Si::Error: std::fmt::Display,
    St: futures::Stream<Item = Result<Message, axum::Error>> + Unpin + Send + 'static,
{
    use futures::SinkExt;
    // As exec: an empty frame on the first output channel says the streams are up.
    let first = if opts.stdout {
        STDOUT_CHANNEL
    } else if opts.stderr {
        exec::STDERR_CHANNEL
    } else {
        exec::ERROR_CHANNEL
    };
    if sink.send(Message::Binary(encode_frame(first, &[]))).await.is_err() {
        return;
    }
    let (resize_tx, mut resize_rx) = watch::channel::<Option<exec::TermSize>>(None);
    let stdin_tx = match &source {
        Source::Process(r) if opts.stdin => r.stdin.clone(),
        _ => None,
    };
    let mut reader = tokio::spawn(exec::read_client_frames(stream, protocol, stdin_tx, resize_tx));
    let channel = if opts.stdout {
        STDOUT_CHANNEL
    } else {
        exec::STDERR_CHANNEL
    };
    let forward = opts.stdout || opts.stderr;
    match source {
        Source::Process(running) => {
            let mut rx = running.output.subscribe();
            let pty = running.pty.clone();
            loop {
                tokio::select! {
                    chunk = rx.recv() => match chunk {
                        Ok(data) => {
                            if forward && sink.send(Message::Binary(encode_frame(channel, &data))).await.is_err() {
                                return;
                            }
                        }
                        // A client too slow for the backlog misses output, as a full pipe would lose it.
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                    _ = running.ended.cancelled() => {
                        // Ended is signalled after the output was drained: what is queued is all.
                        loop {
                            match rx.try_recv() {
                                Ok(data) => {
                                    if forward && sink.send(Message::Binary(encode_frame(channel, &data))).await.is_err() {
                                        return;
                                    }
                                }
                                Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                                Err(_) => break,
                            }
                        }
                        break;
                    }
                    _ = resize_rx.changed() => {
                        let size = *resize_rx.borrow_and_update();
                        if let (Some(size), Some(pty)) = (size, &pty)
                            && size.width > 0 && size.height > 0
                            && let Err(e) = pty.resize(size)
                        {
                            tracing::debug!(error = %e, "terminal resize failed");
                        }
                    }
                    _ = &mut reader => {
                        // The client detached; the container keeps running, as on a real node.
                        tracing::debug!(namespace, pod, container, "attach client went away");
                        return;
                    }
                }
            }
        }
        Source::Log => {
            let mut rx = cluster.logs.subscribe(&namespace, &pod, &container);
            loop {
                tokio::select! {
                    line = rx.recv() => match line {
                        Ok(line) => {
                            let data = format!("{}\n", line.text);
                            if forward && sink.send(Message::Binary(encode_frame(channel, data.as_bytes()))).await.is_err() {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        // The pod is gone.
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                    _ = &mut reader => return,
                }
            }
        }
    }
    let _ = sink
        .send(Message::Binary(encode_frame(
            exec::ERROR_CHANNEL,
            exec::status_success().as_bytes(),
        )))
        .await;
    let _ = sink
        .send(Message::Close(Some(axum::extract::ws::CloseFrame {
            code: 1000,
            reason: "".into(),
        })))
        .await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), reader).await;
}
