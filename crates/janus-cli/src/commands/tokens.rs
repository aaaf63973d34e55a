//! `janus tokens list|create|revoke`: personal API tokens, managed with a login session (a CLI session, not a
//! token: the server refuses tokens managing tokens).

use serde_json::{Value, json};

use crate::cli::TokensCommand;
use crate::config::resolve_target;
use crate::http::Api;
use crate::output::{self, s};
use crate::{CliError, ExitCode};

/// Runs a `tokens` subcommand.
pub async fn run(cmd: TokensCommand) -> Result<i32, CliError> {
    match cmd {
        TokensCommand::List { all, conn, out } => {
            let t = resolve_target(&conn)?;
            let q: &[(&str, &str)] = if all { &[("all", "true")] } else { &[] };
            let answer = Api::new(&t)?.get(&["api", "v1", "tokens"], q).await?;
            // The contract's answer is an array; accept a `{tokens: […]}` wrapper as well.
            let list = match answer {
                Value::Object(mut m) => m.remove("tokens").unwrap_or(Value::Array(Vec::new())),
                other => other,
            };
            if output::machine(out.format, &list)? {
                return Ok(0);
            }
            let items = list.as_array().map(Vec::as_slice).unwrap_or_default();
            if items.is_empty() {
                output::out("No API tokens; create one with: janus tokens create --name NAME --scopes read\n");
                return Ok(0);
            }
            let mut header = vec!["ID", "NAME", "SCOPES", "EXPIRES", "LAST USED", "STATE"];
            if all {
                header.push("OWNER");
            }
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|k| {
                    let mut row = vec![
                        s(k, "displayId").to_string(),
                        s(k, "name").to_string(),
                        k.get("scopes")
                            .and_then(Value::as_array)
                            .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","))
                            .unwrap_or_default(),
                        s(k, "expiresAt").to_string(),
                        match s(k, "lastUsedAt") {
                            "" => "never".to_string(),
                            at => format!("{at} {}", s(k, "lastUsedIp")).trim_end().to_string(),
                        },
                        if s(k, "revokedAt").is_empty() {
                            "valid"
                        } else {
                            "revoked"
                        }
                        .to_string(),
                    ];
                    if all {
                        row.push(s(k, "owner").to_string());
                    }
                    row
                })
                .collect();
            output::out(&output::table(&header, &rows));
            Ok(0)
        }
        TokensCommand::Create {
            name,
            scopes,
            expires_in_days,
            conn,
            out,
        } => {
            let t = resolve_target(&conn)?;
            let mut body = json!({"name": name, "scopes": scopes});
            if let (Some(d), Some(m)) = (expires_in_days, body.as_object_mut()) {
                m.insert("expiresInDays".into(), d.into());
            }
            let created = Api::new(&t)?.post(&["api", "v1", "tokens"], &body).await?;
            if output::machine(out.format, &created)? {
                return Ok(0);
            }
            let token = s(&created, "token");
            if token.is_empty() {
                return Err(CliError::new(
                    ExitCode::Unreachable,
                    "the server created the token but did not return it; revoke it and try again",
                ));
            }
            // The token alone on stdout (for `$(janus tokens create …)`), the rest for the person on stderr.
            eprintln!(
                "Created {} ({}), expires {}. It is shown only now; keep it secret:",
                output::clean(s(&created, "displayId")),
                output::clean(s(&created, "name")),
                s(&created, "expiresAt")
            );
            output::out(&format!("{token}\n"));
            Ok(0)
        }
        TokensCommand::Revoke { display_id, conn } => {
            let t = resolve_target(&conn)?;
            Api::new(&t)?.delete(&["api", "v1", "tokens", &display_id]).await?;
            output::out(&format!("Revoked {display_id}.\n"));
            Ok(0)
        }
    }
}
