//! Where the client keeps its server URL and credential: `$XDG_CONFIG_HOME/janus` or `~/.config/janus`, with
//! `config.toml` (`url = "…"`) and `token` (mode 0600 in a 0700 directory). `JANUS_URL` and `JANUS_TOKEN`
//! override both, so CI jobs need no files at all.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cli::Conn;
use crate::{CliError, ExitCode, Target};

/// Environment variable naming the server, overriding `config.toml`.
pub const ENV_URL: &str = "JANUS_URL";
/// Environment variable carrying the credential, overriding the `token` file.
pub const ENV_TOKEN: &str = "JANUS_TOKEN";

/// What the token file holds.
pub struct SavedLogin {
    /// The credential.
    pub token: String,
    /// The server it was issued for (`None` in files from before this was recorded).
    pub url: Option<String>,
}

impl std::fmt::Debug for SavedLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the credential.
        f.debug_struct("SavedLogin")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// The contents of `config.toml`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Base URL of the janus web.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The client's configuration directory and its files.
#[derive(Debug, Clone)]
pub struct ConfigDir {
    dir: PathBuf,
}

impl ConfigDir {
    /// `$XDG_CONFIG_HOME/janus` when that is an absolute path (the XDG rule: relative values are ignored), else
    /// `$HOME/.config/janus`.
    pub fn locate() -> Result<Self, CliError> {
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| {
                std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .filter(|p| p.is_absolute())
                    .map(|h| h.join(".config"))
            })
            .ok_or_else(|| {
                CliError::new(
                    ExitCode::NotAuthenticated,
                    "neither XDG_CONFIG_HOME nor HOME is set, so there is no config directory; set JANUS_URL and \
                     JANUS_TOKEN instead",
                )
            })?;
        Ok(Self {
            dir: base.join("janus"),
        })
    }

    /// A configuration directory at an explicit path.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn config_file(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    /// The token file.
    pub fn token_file(&self) -> PathBuf {
        self.dir.join("token")
    }

    /// Reads `config.toml`; a missing file is an empty configuration.
    pub fn read_config(&self) -> Result<FileConfig, CliError> {
        let path = self.config_file();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileConfig::default()),
            Err(e) => return Err(file_error("read", &path, &e)),
        };
        toml::from_str(&text).map_err(|e| {
            CliError::new(
                ExitCode::Usage,
                format!(
                    "{} is not valid: {}; fix it or run: janus login --url URL",
                    path.display(),
                    e.message()
                ),
            )
        })
    }

    /// Reads the token file's credential (see [`ConfigDir::read_login`]).
    pub fn read_token(&self) -> Result<Option<String>, CliError> {
        Ok(self.read_login()?.map(|l| l.token))
    }

    /// Reads the token file: the credential, and the server URL it was issued for (the second line; files
    /// written before that line existed have none). Refuses a file that others may read (as ssh refuses such a
    /// key): a shared machine's other users could have copied it.
    pub fn read_login(&self) -> Result<Option<SavedLogin>, CliError> {
        let path = self.token_file();
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(file_error("read", &path, &e)),
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CliError::new(
                ExitCode::NotAuthenticated,
                format!(
                    "the token file {} may be read by other users (mode {mode:04o}); it was not used. Run: \
                     chmod 600 {} (and consider revoking the token), or log in again: janus login",
                    path.display(),
                    path.display()
                ),
            ));
        }
        let text = fs::read_to_string(&path).map_err(|e| file_error("read", &path, &e))?;
        let mut lines = text.lines().map(str::trim);
        let token = lines.next().unwrap_or_default().to_string();
        let url = lines
            .next()
            .and_then(|l| l.strip_prefix("url="))
            .filter(|u| !u.is_empty())
            .map(str::to_string);
        Ok((!token.is_empty()).then_some(SavedLogin { token, url }))
    }

    /// Creates the directory (mode 0700, also when it existed with another mode).
    fn ensure_dir(&self) -> Result<(), CliError> {
        fs::create_dir_all(&self.dir).map_err(|e| file_error("create", &self.dir, &e))?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| file_error("restrict", &self.dir, &e))
    }

    /// Saves the server URL in `config.toml`.
    pub fn write_url(&self, url: &str) -> Result<(), CliError> {
        self.ensure_dir()?;
        let mut cfg = self.read_config().unwrap_or_default();
        cfg.url = Some(url.to_string());
        let text = toml::to_string(&cfg)
            .map_err(|e| CliError::new(ExitCode::Usage, format!("cannot write the configuration: {e}")))?;
        let path = self.config_file();
        fs::write(&path, text).map_err(|e| file_error("write", &path, &e))
    }

    /// Saves the credential in the token file with the URL it was issued for (so it is never sent to another
    /// server), mode 0600 from its creation on (never briefly readable).
    pub fn write_token(&self, token: &str, url: &str) -> Result<(), CliError> {
        self.ensure_dir()?;
        let path = self.token_file();
        // A new file: the old one may have been created with a wider mode, which O_CREAT would keep.
        let tmp = self.dir.join(".token.new");
        let _ = fs::remove_file(&tmp);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| file_error("write", &tmp, &e))?;
        // The umask cannot widen 0600, but set it explicitly all the same.
        f.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(|e| file_error("restrict", &tmp, &e))?;
        f.write_all(format!("{token}\nurl={url}\n").as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| file_error("write", &tmp, &e))?;
        fs::rename(&tmp, &path).map_err(|e| file_error("write", &path, &e))
    }

    /// Deletes the token file; `false` when there was none.
    pub fn delete_token(&self) -> Result<bool, CliError> {
        let path = self.token_file();
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(file_error("delete", &path, &e)),
        }
    }
}

fn file_error(what: &str, path: &Path, e: &std::io::Error) -> CliError {
    CliError::new(ExitCode::Usage, format!("cannot {what} {}: {e}", path.display()))
}

/// Checks and normalises a server URL: http or https, a host, no query; without a trailing slash.
pub fn normalise_url(raw: &str) -> Result<String, CliError> {
    let bad = |why: &str| {
        CliError::new(
            ExitCode::Usage,
            format!("{raw:?} is not a janus URL ({why}); give it like https://janus.example.com"),
        )
    };
    let u = url::Url::parse(raw.trim()).map_err(|e| bad(&e.to_string()))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(bad("no query or fragment, please"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(bad("credentials do not belong in the URL"));
    }
    Ok(u.as_str().trim_end_matches('/').to_string())
}

/// The server URL: the `--url` flag or `JANUS_URL` (clap reads both into `flag`), else `config.toml`.
pub fn resolve_url(flag: Option<&str>, dir: Option<&ConfigDir>) -> Result<String, CliError> {
    if let Some(u) = flag.filter(|u| !u.trim().is_empty()) {
        return normalise_url(u);
    }
    if let Some(dir) = dir
        && let Some(u) = dir.read_config()?.url
    {
        return normalise_url(&u);
    }
    Err(CliError::new(
        ExitCode::NotAuthenticated,
        "no janus server configured; run: janus login --url https://janus.example.com (or set JANUS_URL)",
    ))
}

/// Refuses plain `http://` to anything but this machine unless `insecure` (`--insecure-http`): the bearer token
/// would cross the network readable by anyone on the path.
pub fn check_transport(url: &str, insecure: bool) -> Result<(), CliError> {
    let Ok(u) = url::Url::parse(url) else {
        return Err(CliError::new(ExitCode::Usage, format!("{url:?} is not a URL")));
    };
    if u.scheme() != "http" || insecure {
        return Ok(());
    }
    let loopback = match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if loopback {
        return Ok(());
    }
    Err(CliError::new(
        ExitCode::Usage,
        format!(
            "{url} is plain http, so the token would cross the network unencrypted; use https, or accept the risk \
             with --insecure-http (JANUS_INSECURE_HTTP=true)"
        ),
    ))
}

/// Where to talk to and with which credential, for every command but `login`: `JANUS_TOKEN` wins over the
/// token file; the config directory is optional when both variables are set. A saved token is only sent to
/// the server it was issued for.
pub fn resolve_target(conn: &Conn) -> Result<Target, CliError> {
    let env_token = std::env::var(ENV_TOKEN).ok().filter(|t| !t.trim().is_empty());
    let dir = ConfigDir::locate();
    let base_url = resolve_url(conn.url.as_deref(), dir.as_ref().ok())?;
    check_transport(&base_url, conn.insecure_http)?;
    let token = match env_token {
        Some(t) => t.trim().to_string(),
        None => {
            let dir = dir?;
            let saved = dir.read_login()?.ok_or_else(|| {
                CliError::new(
                    ExitCode::NotAuthenticated,
                    format!("not logged in to {base_url}; run: janus login (or set JANUS_TOKEN)"),
                )
            })?;
            // A file from before the URL was recorded belongs to the URL saved beside it by the same login.
            let issued_for = match saved.url {
                Some(u) => Some(u),
                None => dir.read_config()?.url,
            };
            let issued_for = issued_for.map(|u| normalise_url(&u)).transpose()?;
            if issued_for.as_deref() != Some(base_url.as_str()) {
                let saved_for = issued_for.unwrap_or_else(|| "an unknown server".to_string());
                return Err(CliError::new(
                    ExitCode::NotAuthenticated,
                    format!(
                        "the saved login is for {saved_for}, not {base_url}, and is not sent there; run: janus login \
                         --url {base_url} (or set JANUS_TOKEN)"
                    ),
                ));
            }
            saved.token
        }
    };
    Ok(Target { base_url, token })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalised_and_bad_ones_refused() {
        assert_eq!(
            normalise_url("https://j.example.com/").unwrap(),
            "https://j.example.com"
        );
        assert_eq!(normalise_url("http://127.0.0.1:8080").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(
            normalise_url("https://x.example/janus/").unwrap(),
            "https://x.example/janus"
        );
        for bad in ["janus.example.com", "ftp://x", "https://u:p@x", "https://x/?a=1", ""] {
            let e = normalise_url(bad).unwrap_err();
            assert_eq!(e.code, ExitCode::Usage, "{bad}");
        }
    }

    #[test]
    fn plain_http_is_refused_off_this_machine() {
        for ok in [
            "https://j.example.com",
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://[::1]:2",
        ] {
            assert!(check_transport(ok, false).is_ok(), "{ok}");
        }
        let e = check_transport("http://j.example.com", false).unwrap_err();
        assert_eq!(e.code, ExitCode::Usage);
        assert!(e.message.contains("--insecure-http"), "{}", e.message);
        assert!(check_transport("http://j.example.com", true).is_ok());
    }

    #[test]
    fn the_token_file_is_private_and_a_readable_one_is_refused() {
        let tmp = std::env::temp_dir().join(format!("janus-cli-test-{}", std::process::id()));
        let dir = ConfigDir::at(tmp.join("janus"));
        dir.write_token("janus_cli_x", "https://a.example").unwrap();
        let mode = fs::metadata(dir.token_file()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(dmode, 0o700);
        assert_eq!(dir.read_token().unwrap().as_deref(), Some("janus_cli_x"));
        fs::set_permissions(dir.token_file(), fs::Permissions::from_mode(0o644)).unwrap();
        let e = dir.read_token().unwrap_err();
        assert_eq!(e.code, ExitCode::NotAuthenticated);
        assert!(e.message.contains("chmod 600"), "{}", e.message);
        // A rewrite makes it private again.
        dir.write_token("janus_cli_y", "https://a.example").unwrap();
        assert_eq!(dir.read_token().unwrap().as_deref(), Some("janus_cli_y"));
        assert_eq!(
            dir.read_login().unwrap().unwrap().url.as_deref(),
            Some("https://a.example")
        );
        assert!(dir.delete_token().unwrap());
        assert!(!dir.delete_token().unwrap());
        let _ = fs::remove_dir_all(&tmp);
    }
}
