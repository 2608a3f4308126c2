//! Which downstream MCP servers to connect to: the `mcpServers` object of the MCP client
//! configuration files, merged and validated.
//!
//! Sources, as Claude Code reads them: `MCP_CONFIG_PATH` when set (that file only), else
//! `./.mcp.json` (project) and `~/.claude.json` (user) merged, the project winning per server
//! name. Entries are `{command, args, env}` (stdio, optionally `"type": "stdio"`) or
//! `{"type": "http", url, headers}` (Streamable HTTP). Each may carry `timeoutMs`, the
//! per-call timeout. `${VAR}` and `${VAR:-default}` in commands, arguments, env values,
//! URLs and header values are expanded from our environment, as Claude Code does.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

/// Per-call timeout of a server whose entry has no `timeoutMs`.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest accepted `timeoutMs` (one hour).
pub const MAX_CALL_TIMEOUT_MS: u64 = 3_600_000;
/// Longest accepted server name, in bytes.
pub const MAX_SERVER_NAME_LEN: usize = 64;
/// The name of our own binary (and npm package); entries that run it are skipped.
pub const OWN_NAME: &str = "code-executor-mcp";
/// Environment variable that names the one configuration file to read.
pub const MCP_CONFIG_PATH_ENV: &str = "MCP_CONFIG_PATH";

/// How to reach one downstream server.
#[derive(Clone, PartialEq, Eq)]
pub enum ServerEntry {
    /// A child process speaking MCP over its stdin and stdout.
    Stdio {
        /// Program to run (looked up in `PATH` when it has no slash).
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Variables set on top of our own environment.
        env: BTreeMap<String, String>,
    },
    /// A Streamable HTTP endpoint.
    Http {
        /// The endpoint URL (`http://` or `https://`).
        url: String,
        /// Headers sent on every request (for example `Authorization`).
        headers: BTreeMap<String, String>,
    },
}

/// Env and header values often hold secrets: `Debug` shows their names only.
impl fmt::Debug for ServerEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerEntry::Stdio { command, args, env } => f
                .debug_struct("Stdio")
                .field("command", command)
                .field("args", args)
                .field("env", &env.keys().collect::<Vec<_>>())
                .finish(),
            ServerEntry::Http { url, headers } => f
                .debug_struct("Http")
                .field("url", url)
                .field("headers", &headers.keys().collect::<Vec<_>>())
                .finish(),
        }
    }
}

/// One downstream server, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// The server's name: the `<server>` of `mcp__<server>__<tool>`.
    pub name: String,
    /// How to reach it.
    pub entry: ServerEntry,
    /// How long one tool call may take (entry field `timeoutMs`, default 30 s).
    pub call_timeout: Duration,
}

/// Why the downstream server configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DownstreamConfigError {
    /// A configuration file exists but cannot be read (or a file named by
    /// `MCP_CONFIG_PATH` does not exist).
    #[error("cannot read MCP configuration {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A configuration file is not valid JSON.
    #[error("malformed JSON in MCP configuration {path}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The file's top level or its `mcpServers` is not a JSON object.
    #[error("{path}: {what} is not a JSON object")]
    NotAnObject {
        /// The file.
        path: PathBuf,
        /// Which value (`the top level` or `"mcpServers"`).
        what: &'static str,
    },
    /// A server name that cannot appear in `mcp__<server>__<tool>`.
    #[error("{path}: invalid server name {name:?} in \"mcpServers\": {reason}")]
    InvalidName {
        /// The file.
        path: PathBuf,
        /// The offending name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A server entry with missing, mistyped or invalid fields.
    #[error("{path}: invalid \"mcpServers\" entry {name:?}: {message}")]
    InvalidEntry {
        /// The file.
        path: PathBuf,
        /// The entry's server name.
        name: String,
        /// What is wrong with it.
        message: String,
    },
}

/// Loads the downstream servers: from `mcp_config_path` only when given, else from
/// `<cwd>/.mcp.json` and `<home>/.claude.json` merged (the project wins per server name).
///
/// Only the top-level `"mcpServers"` object of each file is read (`~/.claude.json` holds
/// much else). Missing default files are fine; a file named by `mcp_config_path` must exist.
/// Malformed JSON, a bad server name (it must match `[A-Za-z0-9_-]+`, not contain `__`,
/// not start or end with `_`, and be at most 64 bytes) or a bad entry is an error naming the
/// file and the entry. Our own entry (a command or argument naming `code-executor-mcp`) and
/// entries with `"disabled": true` are skipped, and so, with a warning, are transports we do
/// not speak (`sse`, `ws`). The result is sorted by server name.
pub fn load_servers(
    mcp_config_path: Option<&Path>,
    cwd: &Path,
    home: Option<&Path>,
) -> Result<Vec<ServerConfig>, DownstreamConfigError> {
    load_servers_with_env(mcp_config_path, cwd, home, &|name| std::env::var(name).ok())
}

/// [`load_servers`] with the sources taken from the process: `MCP_CONFIG_PATH` (when set and
/// not empty), the current directory and `HOME`.
pub fn load_servers_from_env() -> Result<Vec<ServerConfig>, DownstreamConfigError> {
    let explicit = std::env::var_os(MCP_CONFIG_PATH_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    load_servers(explicit.as_deref(), &cwd, home.as_deref())
}

type EnvLookup<'a> = dyn Fn(&str) -> Option<String> + 'a;

fn load_servers_with_env(
    mcp_config_path: Option<&Path>,
    cwd: &Path,
    home: Option<&Path>,
    env: &EnvLookup<'_>,
) -> Result<Vec<ServerConfig>, DownstreamConfigError> {
    // name -> (file it came from, raw entry); the first file to name a server wins.
    let mut merged: BTreeMap<String, (PathBuf, Value)> = BTreeMap::new();
    let sources: Vec<(PathBuf, bool)> = match mcp_config_path {
        Some(path) => vec![(path.to_path_buf(), true)],
        None => {
            let mut v = vec![(cwd.join(".mcp.json"), false)];
            if let Some(home) = home {
                v.push((home.join(".claude.json"), false));
            }
            v
        }
    };
    for (path, required) in sources {
        let Some(servers) = read_mcp_servers(&path, required)? else {
            continue;
        };
        for (name, raw) in servers {
            merged.entry(name).or_insert_with(|| (path.clone(), raw));
        }
    }

    let mut out = Vec::with_capacity(merged.len());
    for (name, (path, raw)) in merged {
        if let Some(config) = parse_entry(&path, &name, raw, env)? {
            out.push(config);
        }
    }
    Ok(out)
}

/// The `mcpServers` object of one file; `None` when the file is absent and not required.
fn read_mcp_servers(
    path: &Path,
    required: bool,
) -> Result<Option<Map<String, Value>>, DownstreamConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(None),
        Err(source) => {
            return Err(DownstreamConfigError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let doc: Value = serde_json::from_str(&text).map_err(|source| DownstreamConfigError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let Value::Object(mut top) = doc else {
        return Err(DownstreamConfigError::NotAnObject {
            path: path.to_path_buf(),
            what: "the top level",
        });
    };
    match top.remove("mcpServers") {
        None | Some(Value::Null) => Ok(Some(Map::new())),
        Some(Value::Object(servers)) => Ok(Some(servers)),
        Some(_) => Err(DownstreamConfigError::NotAnObject {
            path: path.to_path_buf(),
            what: "\"mcpServers\"",
        }),
    }
}

/// The fields of an entry, as written (camelCase). Unknown fields are ignored: clients add
/// their own (`description`, `alwaysAllow`, ...).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEntry {
    #[serde(rename = "type")]
    kind: Option<String>,
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    timeout_ms: Option<u64>,
    #[serde(default)]
    disabled: bool,
}

fn parse_entry(
    path: &Path,
    name: &str,
    raw: Value,
    env: &EnvLookup<'_>,
) -> Result<Option<ServerConfig>, DownstreamConfigError> {
    let invalid = |message: String| DownstreamConfigError::InvalidEntry {
        path: path.to_path_buf(),
        name: name.to_owned(),
        message,
    };
    let raw: RawEntry = serde_json::from_value(raw).map_err(|e| invalid(e.to_string()))?;

    // Our own entry is skipped before the name check: it may be named anything.
    if raw.command.as_deref().is_some_and(names_us) || raw.args.iter().any(|a| names_us(a)) {
        tracing::debug!(target: "downstream", server = name, file = %path.display(), "skipping our own entry");
        return Ok(None);
    }
    if raw.disabled {
        tracing::debug!(target: "downstream", server = name, file = %path.display(), "skipping disabled entry");
        return Ok(None);
    }
    if let Err(reason) = check_server_name(name) {
        return Err(DownstreamConfigError::InvalidName {
            path: path.to_path_buf(),
            name: name.to_owned(),
            reason,
        });
    }

    let call_timeout = match raw.timeout_ms {
        None => DEFAULT_CALL_TIMEOUT,
        Some(ms @ 1..=MAX_CALL_TIMEOUT_MS) => Duration::from_millis(ms),
        Some(ms) => {
            return Err(invalid(format!(
                "\"timeoutMs\" must be between 1 and {MAX_CALL_TIMEOUT_MS}, got {ms}"
            )))
        }
    };
    let expand = |field: &str, value: &str| {
        expand_vars(value, env).map_err(|e| invalid(format!("{field}: {e}")))
    };

    let kind = match (raw.kind.as_deref(), &raw.command, &raw.url) {
        (Some("stdio"), ..) | (None, Some(_), _) => "stdio",
        (Some("http" | "streamable-http" | "streamableHttp"), ..) | (None, None, Some(_)) => "http",
        (Some(other @ ("sse" | "ws")), ..) => {
            tracing::warn!(
                target: "downstream",
                server = name,
                file = %path.display(),
                "skipping server: transport {other:?} is not supported (use stdio or \"type\": \"http\")"
            );
            return Ok(None);
        }
        (Some(other), ..) => {
            return Err(invalid(format!(
                "unknown \"type\" {other:?} (expected \"stdio\" or \"http\")"
            )))
        }
        (None, None, None) => {
            return Err(invalid(
                "needs \"command\" (stdio) or \"type\": \"http\" with \"url\"".into(),
            ))
        }
    };
    let entry = if kind == "stdio" {
        let command = raw
            .command
            .as_deref()
            .ok_or_else(|| invalid("stdio entry without \"command\"".into()))?;
        let command = expand("command", command)?;
        if command.trim().is_empty() {
            return Err(invalid("\"command\" is empty".into()));
        }
        let args = raw
            .args
            .iter()
            .map(|a| expand("args", a))
            .collect::<Result<_, _>>()?;
        let mut vars = BTreeMap::new();
        for (k, v) in &raw.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(invalid(format!("invalid environment variable name {k:?}")));
            }
            vars.insert(k.clone(), expand(&format!("env.{k}"), v)?);
        }
        ServerEntry::Stdio {
            command,
            args,
            env: vars,
        }
    } else {
        let url = raw
            .url
            .as_deref()
            .ok_or_else(|| invalid("http entry without \"url\"".into()))?;
        let url = expand("url", url)?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(format!(
                "\"url\" must start with http:// or https://, got {url:?}"
            )));
        }
        let mut headers = BTreeMap::new();
        for (k, v) in &raw.headers {
            let v = expand(&format!("headers.{k}"), v)?;
            if axum::http::HeaderName::from_bytes(k.as_bytes()).is_err() {
                return Err(invalid(format!("invalid header name {k:?}")));
            }
            if axum::http::HeaderValue::from_str(&v).is_err() {
                return Err(invalid(format!("invalid value for header {k:?}")));
            }
            headers.insert(k.clone(), v);
        }
        ServerEntry::Http { url, headers }
    };
    Ok(Some(ServerConfig {
        name: name.to_owned(),
        entry,
        call_timeout,
    }))
}

/// Whether a command or argument runs us: its last path component, without an npm
/// `@version`, a Docker `:tag` or `.exe`, is `code-executor-mcp`.
fn names_us(s: &str) -> bool {
    let base = s.rsplit(['/', '\\']).next().unwrap_or(s);
    let base = base.split(['@', ':']).next().unwrap_or(base);
    let base = base.strip_suffix(".exe").unwrap_or(base);
    base == OWN_NAME
}

/// Checks that `name` can be the `<server>` of `mcp__<server>__<tool>` unambiguously.
pub fn check_server_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > MAX_SERVER_NAME_LEN {
        return Err("it is longer than 64 bytes");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err("only ASCII letters, digits, '_' and '-' are allowed");
    }
    if name.contains("__") {
        return Err("\"__\" separates server and tool in mcp__<server>__<tool>");
    }
    if name.starts_with('_') || name.ends_with('_') {
        return Err("it must not start or end with '_' (mcp__<server>__<tool> would be ambiguous)");
    }
    Ok(())
}

/// Expands `${VAR}` and `${VAR:-default}`; anything else, including a lone `$`, is literal.
fn expand_vars(s: &str, env: &EnvLookup<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("unterminated \"${{\" in {s:?}"));
        };
        let inner = &after[..end];
        let (var, default) = match inner.split_once(":-") {
            Some((var, default)) => (var, Some(default)),
            None => (inner, None),
        };
        if var.is_empty() || !var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("invalid variable reference \"${{{inner}}}\""));
        }
        match (env(var), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => return Err(format!("environment variable {var} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Dirs {
        root: PathBuf,
    }

    impl Dirs {
        fn new(tag: &str) -> Self {
            let root = std::env::temp_dir().join(format!(
                "downstream-config-{tag}-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            ));
            std::fs::create_dir_all(root.join("project")).unwrap();
            std::fs::create_dir_all(root.join("home")).unwrap();
            Dirs { root }
        }
        fn cwd(&self) -> PathBuf {
            self.root.join("project")
        }
        fn home(&self) -> PathBuf {
            self.root.join("home")
        }
        fn write(&self, rel: &str, value: &str) -> PathBuf {
            let path = self.root.join(rel);
            std::fs::write(&path, value).unwrap();
            path
        }
        fn load(&self) -> Result<Vec<ServerConfig>, DownstreamConfigError> {
            load_servers_with_env(None, &self.cwd(), Some(&self.home()), &no_env)
        }
    }

    impl Drop for Dirs {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn stdio(command: &str) -> ServerEntry {
        ServerEntry::Stdio {
            command: command.into(),
            args: vec![],
            env: BTreeMap::new(),
        }
    }

    fn names(servers: &[ServerConfig]) -> Vec<&str> {
        servers.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn no_files_means_no_servers() {
        let d = Dirs::new("none");
        assert!(d.load().unwrap().is_empty());
        assert!(load_servers_with_env(None, &d.cwd(), None, &no_env)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn project_wins_over_user_per_server_name() {
        let d = Dirs::new("merge");
        d.write(
            "project/.mcp.json",
            &json!({"mcpServers": {
                "time": {"command": "project-time"},
                "git": {"command": "mcp-server-git", "args": ["--repository", "/repo"]},
            }})
            .to_string(),
        );
        d.write(
            "home/.claude.json",
            &json!({"mcpServers": {
                "time": {"command": "user-time"},
                "fetch": {"command": "mcp-server-fetch"},
            }})
            .to_string(),
        );
        let servers = d.load().unwrap();
        assert_eq!(names(&servers), ["fetch", "git", "time"]);
        let time = servers.iter().find(|s| s.name == "time").unwrap();
        assert_eq!(time.entry, stdio("project-time"));
        assert_eq!(time.call_timeout, DEFAULT_CALL_TIMEOUT);
        let git = servers.iter().find(|s| s.name == "git").unwrap();
        assert_eq!(
            git.entry,
            ServerEntry::Stdio {
                command: "mcp-server-git".into(),
                args: vec!["--repository".into(), "/repo".into()],
                env: BTreeMap::new(),
            }
        );
    }

    #[test]
    fn mcp_config_path_is_exclusive() {
        let d = Dirs::new("exclusive");
        d.write(
            "project/.mcp.json",
            &json!({"mcpServers": {"a": {"command": "a"}}}).to_string(),
        );
        d.write(
            "home/.claude.json",
            &json!({"mcpServers": {"b": {"command": "b"}}}).to_string(),
        );
        let explicit = d.write(
            "only.json",
            &json!({"mcpServers": {"c": {"command": "c"}}}).to_string(),
        );
        let servers =
            load_servers_with_env(Some(&explicit), &d.cwd(), Some(&d.home()), &no_env).unwrap();
        assert_eq!(names(&servers), ["c"]);
    }

    #[test]
    fn mcp_config_path_must_exist() {
        let d = Dirs::new("explicit-missing");
        let missing = d.root.join("nope.json");
        let err =
            load_servers_with_env(Some(&missing), &d.cwd(), Some(&d.home()), &no_env).unwrap_err();
        assert!(matches!(err, DownstreamConfigError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("nope.json"), "{err}");
    }

    #[test]
    fn own_entry_is_skipped() {
        let d = Dirs::new("own");
        d.write(
            "project/.mcp.json",
            &json!({"mcpServers": {
                "code-executor": {"command": "/usr/local/bin/code-executor-mcp", "args": ["serve"]},
                "via npx": {"command": "npx", "args": ["-y", "code-executor-mcp@1.2.3"]},
                "via docker": {"command": "docker", "args": ["run", "-i", "ghcr.io/acme/code-executor-mcp:latest"]},
                "exe": {"command": "C:\\tools\\code-executor-mcp.exe"},
                "time": {"command": "mcp-server-time"},
                "lookalike": {"command": "code-executor-mcp-helper"},
            }})
            .to_string(),
        );
        let servers = d.load().unwrap();
        assert_eq!(names(&servers), ["lookalike", "time"]);
    }

    #[test]
    fn bad_names_are_errors_naming_file_and_entry() {
        for bad in [
            "a__b",
            "",
            "my server",
            "tab\there",
            "ünïcode",
            "_lead",
            "trail_",
            "x/y",
            "mcp__x",
        ] {
            let d = Dirs::new("badname");
            let path = d.write(
                "project/.mcp.json",
                &json!({"mcpServers": {bad: {"command": "x"}}}).to_string(),
            );
            let err = d.load().unwrap_err();
            assert!(
                matches!(err, DownstreamConfigError::InvalidName { .. }),
                "{bad:?}: {err:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains(&format!("{bad:?}")), "{msg}");
        }
        let long = "a".repeat(MAX_SERVER_NAME_LEN + 1);
        assert!(check_server_name(&long).is_err());
        for good in [
            "time",
            "git-2",
            "my_server",
            "A-b_C9",
            &"a".repeat(MAX_SERVER_NAME_LEN),
        ] {
            assert_eq!(check_server_name(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn malformed_json_names_the_file() {
        let d = Dirs::new("malformed");
        let path = d.write("home/.claude.json", "{\"mcpServers\": {\"a\": ");
        let err = d.load().unwrap_err();
        assert!(matches!(err, DownstreamConfigError::Json { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert!(err.to_string().starts_with("malformed JSON"), "{err}");

        let path = d.write("home/.claude.json", "[1, 2]");
        let err = d.load().unwrap_err();
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        d.write("home/.claude.json", "{\"mcpServers\": []}");
        let err = d.load().unwrap_err();
        assert!(
            matches!(err, DownstreamConfigError::NotAnObject { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn claude_json_extra_keys_are_ignored() {
        let d = Dirs::new("claude");
        d.write(
            "home/.claude.json",
            &json!({
                "numStartups": 12,
                "theme": "dark",
                "projects": {"/some/where": {"mcpServers": {"local": {"command": "local"}}, "allowedTools": []}},
                "oauthAccount": {"emailAddress": "x@example.com"},
                "mcpServers": {"time": {"command": "mcp-server-time", "description": "ignored field"}},
            })
            .to_string(),
        );
        assert_eq!(names(&d.load().unwrap()), ["time"]);
        d.write("home/.claude.json", &json!({"projects": {}}).to_string());
        assert!(d.load().unwrap().is_empty());
    }

    #[test]
    fn http_entries() {
        let d = Dirs::new("http");
        d.write(
            "project/.mcp.json",
            &json!({"mcpServers": {
                "remote": {"type": "http", "url": "https://mcp.example.com/mcp", "headers": {"Authorization": "Bearer s3cret"}},
                "bare": {"url": "http://127.0.0.1:8000/mcp"},
                "legacy": {"type": "sse", "url": "http://127.0.0.1:9000/sse"},
            }})
            .to_string(),
        );
        let servers = d.load().unwrap();
        assert_eq!(names(&servers), ["bare", "remote"]);
        assert_eq!(
            servers[1].entry,
            ServerEntry::Http {
                url: "https://mcp.example.com/mcp".into(),
                headers: BTreeMap::from([("Authorization".into(), "Bearer s3cret".into())]),
            }
        );
        assert!(
            !format!("{:?}", servers[1]).contains("s3cret"),
            "Debug leaks header values"
        );

        for (entry, needle) in [
            (json!({"type": "http"}), "without \"url\""),
            (
                json!({"type": "http", "url": "ftp://x"}),
                "must start with http",
            ),
            (
                json!({"type": "http", "url": "http://x", "headers": {"bad name": "v"}}),
                "invalid header name",
            ),
            (
                json!({"type": "carrier-pigeon", "url": "http://x"}),
                "unknown \"type\"",
            ),
            (json!({"args": ["x"]}), "needs \"command\""),
            (json!({"command": 3}), "invalid type"),
            (json!({"command": "x", "env": {"A": 1}}), "invalid type"),
        ] {
            let path = d.write(
                "project/.mcp.json",
                &json!({"mcpServers": {"srv": entry}}).to_string(),
            );
            let err = d.load().unwrap_err();
            let msg = err.to_string();
            assert!(
                matches!(err, DownstreamConfigError::InvalidEntry { .. }),
                "{msg}"
            );
            assert!(
                msg.contains(needle)
                    && msg.contains("\"srv\"")
                    && msg.contains(&path.display().to_string()),
                "{msg}"
            );
        }
    }

    #[test]
    fn timeout_ms_overrides_the_default() {
        let d = Dirs::new("timeout");
        d.write(
            "project/.mcp.json",
            &json!({"mcpServers": {
                "slow": {"command": "slow", "timeoutMs": 120000},
                "fast": {"type": "http", "url": "http://x/mcp", "timeoutMs": 1500},
                "plain": {"command": "plain"},
            }})
            .to_string(),
        );
        let servers = d.load().unwrap();
        let by_name = |n: &str| servers.iter().find(|s| s.name == n).unwrap().call_timeout;
        assert_eq!(by_name("slow"), Duration::from_secs(120));
        assert_eq!(by_name("fast"), Duration::from_millis(1500));
        assert_eq!(by_name("plain"), Duration::from_secs(30));

        for bad in [
            json!(0),
            json!(-5),
            json!("100"),
            json!(MAX_CALL_TIMEOUT_MS + 1),
        ] {
            d.write(
                "project/.mcp.json",
                &json!({"mcpServers": {"s": {"command": "s", "timeoutMs": bad}}}).to_string(),
            );
            let err = d.load().unwrap_err();
            assert!(
                matches!(err, DownstreamConfigError::InvalidEntry { .. }),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn env_and_disabled_entries() {
        let d = Dirs::new("env");
        d.write(
            "project/.mcp.json",
            &json!({"mcpServers": {
                "with-env": {"command": "${TOOLS:-/opt}/bin/srv", "args": ["--token=${TOKEN}"], "env": {"LEVEL": "debug", "KEY": "${TOKEN}"}},
                "off": {"command": "x", "disabled": true},
            }})
            .to_string(),
        );
        let env = |name: &str| (name == "TOKEN").then(|| "t0k".to_owned());
        let servers = load_servers_with_env(None, &d.cwd(), Some(&d.home()), &env).unwrap();
        assert_eq!(names(&servers), ["with-env"]);
        assert_eq!(
            servers[0].entry,
            ServerEntry::Stdio {
                command: "/opt/bin/srv".into(),
                args: vec!["--token=t0k".into()],
                env: BTreeMap::from([
                    ("KEY".into(), "t0k".into()),
                    ("LEVEL".into(), "debug".into())
                ]),
            }
        );
        let err = d.load().unwrap_err();
        assert!(err.to_string().contains("TOKEN is not set"), "{err}");
    }

    #[test]
    fn variable_expansion() {
        let env = |name: &str| match name {
            "A" => Some("1".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        assert_eq!(
            expand_vars("plain $A ${A}x${EMPTY}", &env).unwrap(),
            "plain $A 1x"
        );
        assert_eq!(expand_vars("${B:-d:e}", &env).unwrap(), "d:e");
        assert!(expand_vars("${B}", &env).is_err());
        assert!(expand_vars("${A", &env).is_err());
        assert!(expand_vars("${A-B}", &env).is_err());
    }
}
