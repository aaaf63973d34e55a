//! `janus audit …`: reads the audit log from the configured database (for SIEM hand-off).

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use chrono::{DateTime, Duration, Utc};
use clap::{Args, Subcommand, ValueEnum};
use janus_store::{ChainReport, ExportFormat, Store};

/// `janus audit` subcommands.
#[derive(Subcommand)]
pub enum AuditCommand {
    /// Export audit events, oldest first, as JSON lines or CSV.
    Export(ExportArgs),
    /// Check the tamper-evident audit chain of the database, or of an exported JSON lines file, and
    /// name the first event changed, deleted or inserted. Exit code 0: intact; 1: broken; 2: cannot
    /// check (no database, unreadable file, a line that is not an exported event).
    Verify(VerifyArgs),
}

/// Arguments of `janus audit verify`.
#[derive(Args)]
pub struct VerifyArgs {
    /// Database URL (`sqlite://…` or `postgres://user@host:port/db`); the password comes from
    /// JANUS_DATABASE_PASSWORD, never from the URL. With --file too, both are checked and the file is
    /// compared with the database.
    #[arg(long, env = "JANUS_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Check this export (`janus audit export --format jsonl`, or a SIEM copy of it).
    #[arg(long)]
    pub file: Option<PathBuf>,
}

/// Output format of `janus audit export`.
#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// RFC 4180 CSV with a header row.
    Csv,
}

/// Arguments of `janus audit export`.
#[derive(Args)]
pub struct ExportArgs {
    /// Database URL (`sqlite://…` or `postgres://user@host:port/db`); the password comes from
    /// JANUS_DATABASE_PASSWORD, never from the URL.
    #[arg(long, env = "JANUS_DATABASE_URL")]
    pub database_url: String,
    /// Only events at or after this time: RFC 3339 (`2026-01-31T00:00:00Z`) or an age such as `7d`,
    /// `12h`, `30m`, `2w`.
    #[arg(long)]
    pub since: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    pub format: Format,
    /// Write to this file (created or truncated, mode 0600) instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// Parses `--since`: an RFC 3339 time, or an age (`<n>s|m|h|d|w`) counted back from `now`.
pub fn parse_since(s: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    if let Some(t) = janus_api::rules::time::parse_time(s) {
        return Ok(t);
    }
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: i64 = num
        .parse()
        .with_context(|| format!("--since {s:?}: expected an RFC 3339 time or an age like 7d"))?;
    let age = match unit {
        "s" => Duration::try_seconds(n),
        "m" => Duration::try_minutes(n),
        "h" => Duration::try_hours(n),
        "d" => Duration::try_days(n),
        "w" => Duration::try_weeks(n),
        _ => anyhow::bail!("--since {s:?}: unknown unit {unit:?} (use s, m, h, d or w)"),
    }
    .with_context(|| format!("--since {s:?} is out of range"))?;
    now.checked_sub_signed(age)
        .with_context(|| format!("--since {s:?} is out of range"))
}

/// Runs a `janus audit` subcommand.
pub async fn run(cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Export(args) => export(args).await,
        AuditCommand::Verify(args) => {
            let code = match verify(&args).await {
                Ok((text, ok)) => {
                    println!("{text}");
                    if ok { 0 } else { 1 }
                }
                Err(e) => {
                    eprintln!("janus audit verify: cannot check: {e:#}");
                    2
                }
            };
            std::process::exit(code)
        }
    }
}

/// Events of a copy compared with the database per query.
const COMPARE_PIECE: usize = 1000;

/// Checks the file, the database, or both and then the file against the database. Returns what to
/// print and whether everything checked is intact.
async fn verify(args: &VerifyArgs) -> anyhow::Result<(String, bool)> {
    let file_report = match &args.file {
        Some(path) => {
            let file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
            Some(
                janus_store::chain::verify_jsonl(std::io::BufReader::new(file))
                    .with_context(|| format!("{}", path.display()))?,
            )
        }
        None => None,
    };
    let Some(url) = args.database_url.as_deref() else {
        return match file_report {
            Some(r) => Ok((describe(&r), r.ok())),
            None => anyhow::bail!("give --database-url (or JANUS_DATABASE_URL), --file, or both"),
        };
    };
    let password = std::env::var("JANUS_DATABASE_PASSWORD").ok();
    let store = Store::connect_to_check(url, password.as_deref()).await?;
    let db_report = store.verify_audit_chain().await?;
    let Some(file_report) = file_report else {
        store.close().await;
        return Ok((describe(&db_report), db_report.ok()));
    };
    // The copy against the database, a query per piece; the file is read again, keeping only seq,
    // key and hash of each event.
    let path = args.file.as_deref().unwrap_or(std::path::Path::new(""));
    let file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut pieces = Vec::new();
    janus_store::chain::jsonl_links(std::io::BufReader::new(file), COMPARE_PIECE, &mut |p| pieces.push(p))
        .with_context(|| format!("{}", path.display()))?;
    let mut difference = None;
    let mut compared = 0usize;
    for piece in &pieces {
        if let Some(p) = store.compare_audit_copy(piece).await? {
            difference = Some(p);
            break;
        }
        compared += piece.len();
    }
    store.close().await;
    let comparison = match &difference {
        None => format!("copy against database: no difference ({compared} events of the copy compared)"),
        Some(p) => format!("copy against database: BROKEN: {p}"),
    };
    let ok = file_report.ok() && db_report.ok() && difference.is_none();
    let text = format!(
        "{}\ncopy: {}\ndatabase: {}\n{comparison}",
        if ok { "audit chain intact" } else { "audit chain BROKEN" },
        describe(&file_report),
        describe(&db_report)
    );
    Ok((text, ok))
}

/// The report as the command prints it: one line saying intact or broken, then what was checked.
fn describe(r: &ChainReport) -> String {
    let range = match (r.first_seq, &r.last) {
        (Some(first), Some((last, hash))) => format!("seq {first}..={last}, last hash {hash}"),
        _ => "no events".to_string(),
    };
    let mut out = match &r.problem {
        None => format!("audit chain intact: {} events checked ({range})", r.events),
        Some(p) => format!(
            "audit chain BROKEN: {p}\n{} events before it were intact ({range})",
            r.events
        ),
    };
    if !r.starts_after.is_empty() {
        out.push_str(&format!("\nthe first event links to {}", r.starts_after));
    }
    if r.unchained > 0 {
        out.push_str(&format!(
            "\n{} events are not chained yet (written by a replica that is not upgraded; the next insert chains them)",
            r.unchained
        ));
    }
    out
}

async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let since = args.since.as_deref().map(|s| parse_since(s, Utc::now())).transpose()?;
    let password = std::env::var("JANUS_DATABASE_PASSWORD").ok();
    let store = Store::connect(&args.database_url, password.as_deref()).await?;
    let format = match args.format {
        Format::Jsonl => ExportFormat::Jsonl,
        Format::Csv => ExportFormat::Csv,
    };
    let mut out: Box<dyn std::io::Write + Send> = match &args.output {
        Some(path) => {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let file = opts
                .open(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Box::new(std::io::BufWriter::new(file))
        }
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let started = std::time::Instant::now();
    let mut last_report = 0u64;
    let mut progress = |n: u64| {
        // Long exports say how far they are, on stderr so stdout stays clean.
        if n >= last_report + 10_000 {
            last_report = n;
            eprintln!("janus audit export: {n} events so far");
        }
    };
    let n = store
        .audit_export_with_progress(since, format, &mut *out, &mut progress)
        .await?;
    out.flush().context("cannot write the export")?;
    store.close().await;
    eprintln!(
        "janus audit export: {n} events exported in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_forms() {
        let now = DateTime::parse_from_rfc3339("2026-02-10T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_since("2026-01-31T12:00:00+01:00", now).unwrap(),
            DateTime::parse_from_rfc3339("2026-01-31T11:00:00Z").unwrap()
        );
        assert_eq!(parse_since("7d", now).unwrap(), now - Duration::days(7));
        assert_eq!(parse_since("12h", now).unwrap(), now - Duration::hours(12));
        assert_eq!(parse_since("2w", now).unwrap(), now - Duration::weeks(2));
        assert_eq!(parse_since("90s", now).unwrap(), now - Duration::seconds(90));
        assert!(parse_since("7y", now).is_err());
        assert!(parse_since("d", now).is_err());
        assert!(parse_since("yesterday", now).is_err());
        assert!(parse_since("99999999999999d", now).is_err());
    }
}
