//! Container logs: appended by tests and the demo, served by `pods/log` with tail, timestamps and follow.
//!
//! Each container keeps its newest [`MAX_LINES_PER_CONTAINER`] lines with the time they were
//! appended, and a broadcast channel for `follow=true` readers. Deleting the pod drops the channel,
//! which ends every follower, like a real `kubectl logs -f` ends when its pod goes away.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use tokio::sync::broadcast;

use crate::Cluster;
use crate::errors::{ApiError, ApiResult};
use crate::exec::{query_bool, select_container};
use crate::resources::GroupResource;
use crate::store::ns_name;

/// Lines kept per container; older ones are dropped, as a node rotates its log files.
pub const MAX_LINES_PER_CONTAINER: usize = 10_000;
/// Lines a follower may fall behind before it skips ahead.
const FOLLOW_BUFFER: usize = 1024;
/// How often a follower checks that its pod still exists (a backstop for deletions that bypass
/// [`LogBook::remove_pod`], e.g. a store restored wholesale).
const POD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When it was written.
    pub time: DateTime<Utc>,
    /// The text, without newline.
    pub text: String,
}

impl LogLine {
    /// The line as served: optional timestamp, text, newline.
    fn render(&self, timestamps: bool) -> String {
        if timestamps {
            format!("{} {}\n", format_timestamp(&self.time), self.text)
        } else {
            format!("{}\n", self.text)
        }
    }
}

/// The kubelet's timestamp format: RFC 3339 with exactly nine fractional digits, UTC.
pub fn format_timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

struct ContainerLog {
    lines: VecDeque<Arc<LogLine>>,
    tx: broadcast::Sender<Arc<LogLine>>,
}

impl ContainerLog {
    fn new() -> Self {
        Self {
            lines: VecDeque::new(),
            tx: broadcast::channel(FOLLOW_BUFFER).0,
        }
    }
}

type Key = (String, String, String);

/// Log lines per (namespace, pod, container).
#[derive(Default)]
pub struct LogBook {
    inner: Mutex<HashMap<Key, ContainerLog>>,
}

impl std::fmt::Debug for LogBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogBook")
            .field("containers", &self.lock().len())
            .finish()
    }
}

fn key(namespace: &str, pod: &str, container: &str) -> Key {
    (namespace.to_string(), pod.to_string(), container.to_string())
}

impl LogBook {
    fn lock(&self) -> MutexGuard<'_, HashMap<Key, ContainerLog>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends one line (without trailing newline) to a container's log. Embedded newlines split it
    /// into several lines, as a container runtime would record them.
    pub fn append(&self, namespace: &str, pod: &str, container: &str, line: &str) {
        self.append_at(namespace, pod, container, Utc::now(), line);
    }

    /// Appends a line with a given timestamp (tests of `sinceSeconds`/`sinceTime`).
    pub fn append_at(&self, namespace: &str, pod: &str, container: &str, time: DateTime<Utc>, line: &str) {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let mut g = self.lock();
        let log = g
            .entry(key(namespace, pod, container))
            .or_insert_with(ContainerLog::new);
        for text in line.split('\n') {
            let entry = Arc::new(LogLine {
                time,
                text: text.to_string(),
            });
            log.lines.push_back(entry.clone());
            while log.lines.len() > MAX_LINES_PER_CONTAINER {
                log.lines.pop_front();
            }
            // No followers is the normal case.
            let _ = log.tx.send(entry);
        }
    }

    /// The stored lines of a container, oldest first.
    pub fn lines(&self, namespace: &str, pod: &str, container: &str) -> Vec<LogLine> {
        self.lock()
            .get(&key(namespace, pod, container))
            .map(|l| l.lines.iter().map(|x| (**x).clone()).collect())
            .unwrap_or_default()
    }

    /// How many `follow=true` readers a container's log has now (tests: a follower ends when the
    /// access behind it does).
    pub fn followers(&self, namespace: &str, pod: &str, container: &str) -> usize {
        self.lock()
            .get(&key(namespace, pod, container))
            .map(|l| l.tx.receiver_count())
            .unwrap_or(0)
    }

    /// Forgets a pod's logs; its followers' streams end.
    pub fn remove_pod(&self, namespace: &str, pod: &str) {
        self.lock().retain(|(ns, p, _), _| !(ns == namespace && p == pod));
    }

    /// A receiver for every line appended from now on (attach to a container without a process).
    pub(crate) fn subscribe(&self, namespace: &str, pod: &str, container: &str) -> broadcast::Receiver<Arc<LogLine>> {
        self.snapshot_and_subscribe(namespace, pod, container).1
    }

    /// The current lines and, atomically with them, a receiver for every later line.
    fn snapshot_and_subscribe(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> (Vec<Arc<LogLine>>, broadcast::Receiver<Arc<LogLine>>) {
        let mut g = self.lock();
        let log = g
            .entry(key(namespace, pod, container))
            .or_insert_with(ContainerLog::new);
        (log.lines.iter().cloned().collect(), log.tx.subscribe())
    }

    fn snapshot(&self, namespace: &str, pod: &str, container: &str) -> Vec<Arc<LogLine>> {
        self.lock()
            .get(&key(namespace, pod, container))
            .map(|l| l.lines.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// `pods/log` query parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    /// `container`, if given and not empty.
    pub container: Option<String>,
    /// Keep streaming new lines.
    pub follow: bool,
    /// Logs of the previous container instance.
    pub previous: bool,
    /// Prefix each line with its RFC 3339 timestamp.
    pub timestamps: bool,
    /// Only the last N lines.
    pub tail_lines: Option<i64>,
    /// Stop after this many bytes.
    pub limit_bytes: Option<i64>,
    /// Only lines newer than this many seconds.
    pub since_seconds: Option<i64>,
    /// Only lines at or after this time.
    pub since_time: Option<DateTime<Utc>>,
}

fn query_int(query: &[(String, String)], k: &str) -> ApiResult<Option<i64>> {
    match query.iter().find(|(key, _)| key == k) {
        None => Ok(None),
        Some((_, v)) => v
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("strconv.ParseInt: parsing \"{v}\": invalid syntax"))),
    }
}

impl LogOptions {
    /// Reads and validates the query as the API server does (`PodLogOptions` validation).
    pub fn from_query(pod_name: &str, query: &[(String, String)]) -> ApiResult<Self> {
        let since_time = match query.iter().find(|(k, _)| k == "sinceTime") {
            None => None,
            Some((_, v)) => Some(
                DateTime::parse_from_rfc3339(v)
                    .map_err(|e| ApiError::bad_request(format!("parsing time \"{v}\" as RFC3339: {e}")))?
                    .with_timezone(&Utc),
            ),
        };
        let opts = Self {
            container: query
                .iter()
                .find(|(k, _)| k == "container")
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty()),
            follow: query_bool(query, "follow"),
            previous: query_bool(query, "previous"),
            timestamps: query_bool(query, "timestamps"),
            tail_lines: query_int(query, "tailLines")?,
            limit_bytes: query_int(query, "limitBytes")?,
            since_seconds: query_int(query, "sinceSeconds")?,
            since_time,
        };
        let mut causes = Vec::new();
        if let Some(t) = opts.tail_lines.filter(|t| *t < 0) {
            causes.push((
                "tailLines".to_string(),
                format!("Invalid value: {t}: must be greater than or equal to 0"),
            ));
        }
        if let Some(l) = opts.limit_bytes.filter(|l| *l < 1) {
            causes.push((
                "limitBytes".to_string(),
                format!("Invalid value: {l}: must be greater than 0"),
            ));
        }
        match (opts.since_seconds, opts.since_time) {
            (Some(_), Some(_)) => causes.push((
                String::new(),
                "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified".to_string(),
            )),
            (Some(s), None) if s < 1 => {
                causes.push((
                    "sinceSeconds".to_string(),
                    format!("Invalid value: {s}: must be greater than 0"),
                ));
            }
            _ => {}
        }
        if !causes.is_empty() {
            return Err(ApiError::invalid("PodLogOptions", "", pod_name, causes));
        }
        Ok(opts)
    }

    /// The earliest time a line may have to be served.
    fn since(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.since_time
            .or_else(|| self.since_seconds.map(|s| now - chrono::Duration::seconds(s)))
    }
}

/// Applies tail (first, over the stored lines, as the kubelet seeks in its file), then the since
/// filter, and renders the lines.
fn render_lines(lines: &[Arc<LogLine>], opts: &LogOptions, now: DateTime<Utc>) -> Vec<u8> {
    let start = match opts.tail_lines {
        Some(n) => lines.len().saturating_sub(usize::try_from(n).unwrap_or(0)),
        None => 0,
    };
    let since = opts.since(now);
    let mut out = Vec::new();
    for l in &lines[start..] {
        if since.is_some_and(|s| l.time < s) {
            continue;
        }
        out.extend_from_slice(l.render(opts.timestamps).as_bytes());
    }
    out
}

/// Cuts `data` to what `remaining` still allows and updates it.
fn take_limit(mut data: Vec<u8>, remaining: &mut Option<u64>) -> Vec<u8> {
    if let Some(r) = remaining {
        let keep = usize::try_from(*r).unwrap_or(usize::MAX).min(data.len());
        data.truncate(keep);
        *r -= keep as u64;
    }
    data
}

fn text_response(body: Body) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain"));
    resp
}

/// `GET .../pods/{name}/log` for an existing pod object.
pub async fn serve_log(cluster: Arc<Cluster>, pod: Value, query: Vec<(String, String)>) -> ApiResult<Response> {
    let (namespace, name) = ns_name(&pod);
    let opts = LogOptions::from_query(&name, &query)?;
    let container = select_container(&pod, opts.container.as_deref())?;
    if pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty) {
        // Not scheduled: the API server has no kubelet to ask and answers with an empty log.
        return Ok(text_response(Body::empty()));
    }
    let statuses = [
        "containerStatuses",
        "initContainerStatuses",
        "ephemeralContainerStatuses",
    ]
    .iter()
    .filter_map(|k| pod["status"][*k].as_array())
    .flatten()
    .find(|s| s["name"] == container.as_str());
    if let Some(reason) = statuses.and_then(|s| s["state"]["waiting"]["reason"].as_str()) {
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
        )));
    }
    if opts.previous {
        return Err(ApiError::bad_request(format!(
            "previous terminated container \"{container}\" in pod \"{name}\" not found"
        )));
    }
    let now = Utc::now();
    let mut remaining = opts.limit_bytes.and_then(|l| u64::try_from(l).ok());
    if !opts.follow {
        let lines = cluster.logs.snapshot(&namespace, &name, &container);
        let body = take_limit(render_lines(&lines, &opts, now), &mut remaining);
        return Ok(text_response(Body::from(body)));
    }

    let (lines, rx) = cluster.logs.snapshot_and_subscribe(&namespace, &name, &container);
    let initial = take_limit(render_lines(&lines, &opts, now), &mut remaining);
    let state = Follow {
        cluster,
        namespace,
        pod: name,
        uid: pod["metadata"]["uid"].as_str().unwrap_or_default().to_string(),
        initial: Some(Bytes::from(initial)),
        rx,
        remaining,
        timestamps: opts.timestamps,
        since: opts.since(now),
    };
    let stream = futures::stream::unfold(state, |mut st| async move {
        let chunk = st.next_chunk().await?;
        Some((Ok::<Bytes, std::io::Error>(chunk), st))
    });
    Ok(text_response(Body::from_stream(stream)))
}

/// The state of one `follow=true` response.
struct Follow {
    cluster: Arc<Cluster>,
    namespace: String,
    pod: String,
    uid: String,
    initial: Option<Bytes>,
    rx: broadcast::Receiver<Arc<LogLine>>,
    remaining: Option<u64>,
    timestamps: bool,
    since: Option<DateTime<Utc>>,
}

impl Follow {
    /// The next piece of the body; `None` ends it (limit reached, pod deleted).
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(b) = self.initial.take()
            && !b.is_empty()
        {
            return Some(b);
        }
        if self.remaining == Some(0) {
            return None;
        }
        let mut check = tokio::time::interval(POD_CHECK_INTERVAL);
        check.tick().await;
        loop {
            tokio::select! {
                r = self.rx.recv() => match r {
                    Ok(line) => {
                        if self.since.is_some_and(|s| line.time < s) {
                            continue;
                        }
                        let data = take_limit(line.render(self.timestamps).into_bytes(), &mut self.remaining);
                        return Some(Bytes::from(data));
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(namespace = self.namespace, pod = self.pod, skipped = n, "log follower fell behind; lines skipped");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = check.tick() => {
                    if !self.pod_exists() {
                        return None;
                    }
                }
            }
        }
    }

    fn pod_exists(&self) -> bool {
        self.cluster
            .store
            .get(&GroupResource::new("", "pods"), &self.namespace, &self.pod)
            .is_some_and(|p| self.uid.is_empty() || p["metadata"]["uid"] == self.uid.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn book_with(n: usize) -> LogBook {
        let b = LogBook::default();
        for i in 0..n {
            b.append("ns", "p", "c", &format!("line {i}"));
        }
        b
    }

    #[test]
    fn append_bounds_and_splits() {
        let b = book_with(MAX_LINES_PER_CONTAINER + 5);
        let lines = b.lines("ns", "p", "c");
        assert_eq!(lines.len(), MAX_LINES_PER_CONTAINER);
        assert_eq!(lines[0].text, "line 5");
        b.append("ns", "p", "d", "a\nb\n");
        let texts: Vec<String> = b.lines("ns", "p", "d").into_iter().map(|l| l.text).collect();
        assert_eq!(texts, vec!["a", "b"]);
        b.remove_pod("ns", "p");
        assert!(b.lines("ns", "p", "c").is_empty());
    }

    #[test]
    fn timestamps_have_nine_digits() {
        let t = DateTime::parse_from_rfc3339("2025-03-04T05:06:07.5Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_timestamp(&t), "2025-03-04T05:06:07.500000000Z");
    }

    #[test]
    fn tail_since_limit() {
        let b = LogBook::default();
        let now = Utc::now();
        b.append_at("ns", "p", "c", now - chrono::Duration::seconds(100), "old");
        b.append_at("ns", "p", "c", now - chrono::Duration::seconds(5), "new1");
        b.append_at("ns", "p", "c", now, "new2");
        let lines = b.snapshot("ns", "p", "c");
        let opts = |pairs: &[(&str, &str)]| LogOptions::from_query("p", &q(pairs)).unwrap();
        assert_eq!(render_lines(&lines, &opts(&[]), now), b"old\nnew1\nnew2\n");
        assert_eq!(render_lines(&lines, &opts(&[("tailLines", "2")]), now), b"new1\nnew2\n");
        assert_eq!(render_lines(&lines, &opts(&[("tailLines", "0")]), now), b"");
        assert_eq!(
            render_lines(&lines, &opts(&[("sinceSeconds", "10")]), now),
            b"new1\nnew2\n"
        );
        let since = format_timestamp(&now);
        assert_eq!(
            render_lines(&lines, &opts(&[("sinceTime", since.as_str())]), now),
            b"new2\n"
        );
        let ts = String::from_utf8(render_lines(
            &lines,
            &opts(&[("timestamps", "true"), ("tailLines", "1")]),
            now,
        ))
        .unwrap();
        assert_eq!(ts, format!("{} new2\n", format_timestamp(&now)));
        let mut rem = Some(6);
        assert_eq!(take_limit(b"old\nnew1\n".to_vec(), &mut rem), b"old\nne");
        assert_eq!(rem, Some(0));
    }

    #[test]
    fn options_are_validated_like_upstream() {
        let e = LogOptions::from_query("p", &q(&[("tailLines", "-1")])).unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "PodLogOptions \"p\" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0"
        );
        let e = LogOptions::from_query("p", &q(&[("limitBytes", "0")])).unwrap_err();
        assert_eq!(e.code, 422);
        let e = LogOptions::from_query("p", &q(&[("sinceSeconds", "5"), ("sinceTime", "2025-01-01T00:00:00Z")]))
            .unwrap_err();
        assert!(
            e.message.contains("at most one of `sinceTime` or `sinceSeconds`"),
            "{}",
            e.message
        );
        let e = LogOptions::from_query("p", &q(&[("tailLines", "x")])).unwrap_err();
        assert_eq!(e.code, 400);
    }

    use crate::kubelet::test_support::cluster as test_cluster;

    fn store_pod(cluster: &Cluster, containers: &[&str]) -> Value {
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": containers.iter().map(|c| json!({"name": c, "image": "busybox"})).collect::<Vec<_>>()},
        });
        crate::kubelet::admit_pod(cluster, &mut pod);
        cluster.store.create(&GroupResource::new("", "pods"), pod).unwrap()
    }

    async fn body_string(resp: Response) -> String {
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn serve_log_selects_container_and_tails() {
        let cluster = test_cluster();
        let pod = store_pod(&cluster, &["a", "b"]);
        cluster.logs.append("ns", "p", "a", "from a");
        cluster.logs.append("ns", "p", "b", "from b 1");
        cluster.logs.append("ns", "p", "b", "from b 2");
        let e = serve_log(cluster.clone(), pod.clone(), vec![]).await.unwrap_err();
        assert_eq!(
            e.message,
            "a container name must be specified for pod p, choose one of: [a b]"
        );
        let e = serve_log(cluster.clone(), pod.clone(), q(&[("container", "zz")]))
            .await
            .unwrap_err();
        assert_eq!(e.message, "container zz is not valid for pod p");
        let resp = serve_log(
            cluster.clone(),
            pod.clone(),
            q(&[("container", "b"), ("tailLines", "1")]),
        )
        .await
        .unwrap();
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/plain");
        assert_eq!(body_string(resp).await, "from b 2\n");
        let e = serve_log(
            cluster.clone(),
            pod.clone(),
            q(&[("container", "a"), ("previous", "true")]),
        )
        .await
        .unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (400, "previous terminated container \"a\" in pod \"p\" not found")
        );
        let resp = serve_log(cluster.clone(), pod, q(&[("container", "a"), ("limitBytes", "4")]))
            .await
            .unwrap();
        assert_eq!(body_string(resp).await, "from");
    }

    #[tokio::test]
    async fn follow_streams_new_lines_and_ends_on_pod_deletion() {
        use futures::StreamExt;
        let cluster = test_cluster();
        let pod = store_pod(&cluster, &["app"]);
        cluster.logs.append("ns", "p", "app", "before");
        let resp = serve_log(cluster.clone(), pod, q(&[("follow", "true")])).await.unwrap();
        let mut body = resp.into_body().into_data_stream();
        async fn next(b: &mut axum::body::BodyDataStream) -> Option<Result<Bytes, axum::Error>> {
            tokio::time::timeout(Duration::from_secs(5), b.next()).await.unwrap()
        }
        assert_eq!(&next(&mut body).await.unwrap().unwrap()[..], b"before\n");
        cluster.logs.append("ns", "p", "app", "after");
        assert_eq!(&next(&mut body).await.unwrap().unwrap()[..], b"after\n");
        cluster.store.remove(&GroupResource::new("", "pods"), "ns", "p");
        crate::kubelet::pod_deleted(&cluster, "ns", "p");
        assert!(next(&mut body).await.is_none());
    }

    #[tokio::test]
    async fn follow_ends_when_pod_vanishes_without_notice() {
        use futures::StreamExt;
        let cluster = test_cluster();
        let pod = store_pod(&cluster, &["app"]);
        let resp = serve_log(cluster.clone(), pod, q(&[("follow", "1")])).await.unwrap();
        let mut body = resp.into_body().into_data_stream();
        // Removed from the store only: the periodic check must notice.
        cluster.store.remove(&GroupResource::new("", "pods"), "ns", "p");
        let end = tokio::time::timeout(Duration::from_secs(5), body.next()).await.unwrap();
        assert!(end.is_none());
    }

    #[tokio::test]
    async fn follow_with_limit_stops() {
        use futures::StreamExt;
        let cluster = test_cluster();
        let pod = store_pod(&cluster, &["app"]);
        let resp = serve_log(cluster.clone(), pod, q(&[("follow", "1"), ("limitBytes", "8")]))
            .await
            .unwrap();
        let mut body = resp.into_body().into_data_stream();
        cluster.logs.append("ns", "p", "app", "12345");
        cluster.logs.append("ns", "p", "app", "67890");
        let mut got = Vec::new();
        while let Some(chunk) = tokio::time::timeout(Duration::from_secs(5), body.next()).await.unwrap() {
            got.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(got, b"12345\n67");
    }
}
