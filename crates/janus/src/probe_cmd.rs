//! `janus probe`: GET health URLs until they answer 2xx (the chart's `helm test` hook, which runs the
//! janus image itself because it has no shell, curl or wget).

use std::time::Duration;

use anyhow::{Context as _, bail};

/// Arguments of `janus probe`.
#[derive(clap::Args)]
pub struct ProbeArgs {
    /// Plain `http://` URLs to GET; each must answer 2xx (redirects are failures).
    #[arg(required = true)]
    pub urls: Vec<String>,
    /// Tries per URL before it counts as failed.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub attempts: u32,
    /// Pause between the tries of one URL.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub interval_seconds: u64,
    /// Timeout of one try (connect and response).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout_seconds: u64,
}

/// Probes every URL; prints one line per URL and fails when any did not answer 2xx.
pub async fn run(args: ProbeArgs) -> anyhow::Result<()> {
    let mut urls = Vec::with_capacity(args.urls.len());
    for raw in &args.urls {
        let url = reqwest::Url::parse(raw).with_context(|| format!("{raw:?} is not a URL"))?;
        // In-cluster Service addresses only; the binary has no TLS client for this.
        if url.scheme() != "http" {
            bail!("{raw:?}: only http:// URLs can be probed");
        }
        urls.push(url);
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout_seconds))
        .redirect(reqwest::redirect::Policy::none())
        // A proxy from the environment would test the proxy, not the Service.
        .no_proxy()
        .build()
        .context("cannot build the HTTP client")?;
    let mut failed = Vec::new();
    for url in urls {
        match probe(&client, &url, args.attempts, Duration::from_secs(args.interval_seconds)).await {
            Ok(status) => println!("ok {url} {status}"),
            Err(e) => {
                println!("FAILED {url}: {e}");
                failed.push(url.to_string());
            }
        }
    }
    if !failed.is_empty() {
        bail!("not healthy: {}", failed.join(", "));
    }
    Ok(())
}

/// The status of the first 2xx answer, or the last failure after `attempts` tries.
async fn probe(client: &reqwest::Client, url: &reqwest::Url, attempts: u32, pause: Duration) -> Result<u16, String> {
    let mut last = String::new();
    for attempt in 1..=attempts {
        match client.get(url.clone()).send().await {
            Ok(r) if r.status().is_success() => return Ok(r.status().as_u16()),
            // The body is not shown: a health endpoint's text is not worth the risk of echoing more.
            Ok(r) => last = format!("HTTP {}", r.status().as_u16()),
            Err(e) => last = error_chain(&e),
        }
        if attempt < attempts {
            tracing::debug!(%url, attempt, error = %last, "probe failed, retrying");
            tokio::time::sleep(pause).await;
        }
    }
    Err(format!("{last} (after {attempts} tries)"))
}

/// reqwest's top-level message is only "error sending request"; the cause says what happened.
fn error_chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
