//! Registry credentials for push/pull, looked up as the Docker CLI does:
//! `--username` with `--password-stdin`; else the Docker config file
//! (`$DOCKER_CONFIG/config.json`, default `~/.docker/config.json`): its
//! credential helper for the registry (`credHelpers`), else its default
//! helper (`credsStore`), else its `auths` entry; else anonymous.

use crate::bail;
use crate::credential_helper::{self, Answer};
use crate::error::{Context, Error, Result};
use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use serde_json::{Map, Value};
use std::io::BufRead;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug, Clone)]
pub struct CredentialArgs {
    /// Registry user name; the password is read from standard input (--password-stdin).
    /// Without it: the Docker config file's credHelpers, credsStore or auths entry.
    #[arg(long, requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the password (or token) for --username from the first line of standard input.
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
}

/// The credentials for one registry and where they came from.
pub struct Credentials {
    pub auth: RegistryAuth,
    source: Source,
}

enum Source {
    Flags(String),
    /// `docker-credential-NAME`.
    Helper(String),
    Auths(PathBuf),
    /// None found; why, if a helper was asked.
    Nothing(Option<String>),
}

impl Credentials {
    fn none(why: Option<String>) -> Credentials {
        Credentials { auth: RegistryAuth::Anonymous, source: Source::Nothing(why) }
    }

    /// What to tell the user when `registry` refuses these credentials.
    pub fn refused(&self, registry: &str) -> String {
        match &self.source {
            Source::Flags(user) => format!("authentication failed for --username {user} (check the password given on stdin)"),
            Source::Helper(program) => format!(
                "authentication failed with the credentials {program} gave for {registry} (renew them, e.g. `docker login {registry}`)"
            ),
            Source::Auths(path) => format!(
                "authentication failed with the auths entry for {registry} in {} (`docker login {registry}` again, or pass --username NAME --password-stdin)",
                path.display()
            ),
            Source::Nothing(why) => format!(
                "authentication required, and no credentials for {registry}{} (pass --username NAME --password-stdin, or `docker login {registry}`)",
                why.as_ref().map_or_else(String::new, |w| format!(": {w}"))
            ),
        }
    }
}

fn docker_config() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => Some(PathBuf::from(dir).join("config.json")),
        None => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json")),
    }
}

/// The registry a config key names: `https://host:port/v1/` -> `host:port`;
/// Docker Hub's spellings -> `index.docker.io` (oci-client's name for it).
fn key_host(key: &str) -> &str {
    let k = key.split_once("://").map_or(key, |(_, rest)| rest);
    match k.split('/').next().unwrap_or(k) {
        "docker.io" | "registry-1.docker.io" => "index.docker.io",
        host => host,
    }
}

/// The server address a helper is asked about: the host, and Docker Hub's
/// historical URL for Docker Hub (what `docker login` stores it under).
fn server_address(registry: &str) -> String {
    match key_host(registry) {
        "index.docker.io" => "https://index.docker.io/v1/".into(),
        host => host.into(),
    }
}

/// The entry for `registry`: its exact key first, then any spelling of it.
fn entry_for<'a>(map: &'a Map<String, Value>, registry: &str) -> Option<&'a Value> {
    map.get(registry).or_else(|| map.iter().find(|(k, _)| key_host(k) == key_host(registry)).map(|(_, v)| v))
}

/// The credentials for `registry` (`host[:port]`).
pub fn resolve(a: &CredentialArgs, registry: &str) -> Result<Credentials> {
    if let Some(user) = &a.username {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context(|| "reading the password from stdin".into())?;
        let password = line.trim_end_matches(['\n', '\r']);
        if password.is_empty() {
            bail!("--password-stdin: standard input held no password");
        }
        return Ok(Credentials {
            auth: RegistryAuth::Basic(user.clone(), password.to_string()),
            source: Source::Flags(user.clone()),
        });
    }
    let Some(path) = docker_config() else { return Ok(Credentials::none(None)) };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Credentials::none(None)),
        Err(e) => bail!("{}: {e}", path.display()),
    };
    from_docker_config(&text, registry, &path, &mut credential_helper::get)
        .map_err(|e| Error(format!("{}: {}", path.display(), e.0)))
}

/// `ask(helper, server)` runs a credential helper (a parameter for the tests).
fn from_docker_config(
    text: &str,
    registry: &str,
    path: &Path,
    ask: &mut dyn FnMut(&str, &str) -> Result<Answer>,
) -> Result<Credentials> {
    let config: Value = serde_json::from_str(text).map_err(|e| Error(format!("not valid JSON ({e})")))?;
    // Docker's order (docker/cli: cli/config/configfile/file.go
    // GetCredentialsStore, credentials/native_store.go Get): the registry's
    // credHelpers entry, else credsStore; a helper's answer replaces the
    // auths entry even when it holds nothing, so auths counts only when no
    // helper applies. A credHelpers entry "" turns credsStore off for that
    // registry. (docs.docker.com/reference/cli/docker/login: "The default
    // credential store will not be used for operations concerning
    // credentials of the specified registries.")
    let (helper, origin) = match config.get("credHelpers").and_then(Value::as_object).and_then(|h| entry_for(h, registry)) {
        Some(v) => (v.as_str().ok_or_else(|| Error(format!("credHelpers entry for {registry} is not a string")))?, "credHelpers"),
        None => match config.get("credsStore") {
            None | Some(Value::Null) => ("", ""),
            Some(v) => (v.as_str().ok_or_else(|| Error("credsStore is not a string".into()))?, "credsStore"),
        },
    };
    if !helper.is_empty() {
        let program = format!("docker-credential-{helper}");
        return match ask(helper, &server_address(registry)).map_err(|e| Error(format!("{origin}: {}", e.0)))? {
            Answer::Password { username, secret } => {
                Ok(Credentials { auth: RegistryAuth::Basic(username, secret), source: Source::Helper(program) })
            }
            Answer::IdentityToken => bail!("{origin}: {program} {}", identity_token(registry)),
            Answer::NotFound => Ok(Credentials::none(Some(format!("{program} has none")))),
        };
    }
    from_auths(&config, registry, path)
}

/// Docker keeps an OAuth2 refresh token (from a browser login) as an identity
/// token; it must be exchanged at the registry's token service, which
/// oci-client does not do (its Bearer auth sends a ready registry token).
fn identity_token(registry: &str) -> String {
    format!(
        "holds an identity token for {registry} (from a browser/SSO login), which smolvm cannot use: pass --username NAME --password-stdin with a password or access token"
    )
}

fn from_auths(config: &Value, registry: &str, path: &Path) -> Result<Credentials> {
    let Some(entry) = config.get("auths").and_then(Value::as_object).and_then(|a| entry_for(a, registry)) else {
        return Ok(Credentials::none(None));
    };
    let found = |user: String, password: String| Credentials {
        auth: RegistryAuth::Basic(user, password),
        source: Source::Auths(path.to_path_buf()),
    };
    if let Some(auth) = entry.get("auth").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| Error(format!("auths.{registry}.auth is not base64")))?;
        let pair = String::from_utf8(raw).map_err(|_| Error(format!("auths.{registry}.auth is not UTF-8")))?;
        let Some((user, password)) = pair.split_once(':') else {
            bail!("auths.{registry}.auth is not base64 of user:password");
        };
        return Ok(found(user.into(), password.into()));
    }
    if entry.get("identitytoken").and_then(Value::as_str).is_some_and(|t| !t.is_empty()) {
        bail!("auths.{registry} {}", identity_token(registry));
    }
    match (entry.get("username").and_then(Value::as_str), entry.get("password").and_then(Value::as_str)) {
        (Some(u), Some(p)) => Ok(found(u.into(), p.into())),
        _ => Ok(Credentials::none(None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(c: Credentials) -> (String, String) {
        match c.auth {
            RegistryAuth::Basic(u, p) => (u, p),
            other => panic!("{other:?}"),
        }
    }

    fn basic(u: &str, p: &str) -> (String, String) {
        (u.to_string(), p.to_string())
    }

    fn no_helper(_: &str, _: &str) -> Result<Answer> {
        panic!("no helper may run")
    }

    fn cfg(text: &str, registry: &str) -> Result<Credentials> {
        from_docker_config(text, registry, Path::new("config.json"), &mut no_helper)
    }

    #[test]
    fn docker_config_auths_entries() {
        let cfg_text = r#"{"auths":{"https://127.0.0.1:5000/v1/":{"auth":"YWxpY2U6czNjcjN0"},
            "reg.example:443":{"username":"bob","password":"pw"}}}"#;
        assert_eq!(pair(cfg(cfg_text, "127.0.0.1:5000").expect("ok")), basic("alice", "s3cr3t"));
        assert_eq!(pair(cfg(cfg_text, "reg.example:443").expect("ok")), basic("bob", "pw"));
        assert!(matches!(cfg(cfg_text, "other:1").expect("ok").auth, RegistryAuth::Anonymous));
        assert!(cfg(r#"{"auths":{"h":{"auth":"!!"}}}"#, "h").is_err());
        assert!(cfg("{", "h").is_err());
        // An identity token in the file: one clear refusal, not a silent anonymous try.
        let e = cfg(r#"{"auths":{"h":{"identitytoken":"refresh-secret"}}}"#, "h").err().expect("token").0;
        assert!(e.contains("identity token") && !e.contains("refresh-secret"), "{e}");
    }

    /// A fake helper: records (helper, server) and answers from `answers`.
    fn with_helpers(text: &str, registry: &str, answers: &[(&str, Answer)]) -> (Result<Credentials>, Vec<(String, String)>) {
        let mut asked = Vec::new();
        let mut ask = |helper: &str, server: &str| -> Result<Answer> {
            asked.push((helper.to_string(), server.to_string()));
            match answers.iter().find(|(h, _)| *h == helper) {
                Some((_, Answer::Password { username, secret })) => {
                    Ok(Answer::Password { username: username.clone(), secret: secret.clone() })
                }
                Some((_, Answer::IdentityToken)) => Ok(Answer::IdentityToken),
                Some((_, Answer::NotFound)) => Ok(Answer::NotFound),
                None => Err(Error(format!("credential helper docker-credential-{helper} is not on PATH"))),
            }
        };
        let r = from_docker_config(text, registry, Path::new("config.json"), &mut ask);
        (r, asked)
    }

    fn password(u: &str, p: &str) -> Answer {
        Answer::Password { username: u.into(), secret: p.into() }
    }

    #[test]
    fn credential_helpers_in_dockers_order() {
        let both = r#"{"credHelpers":{"reg.example:5000":"per"},"credsStore":"store",
            "auths":{"reg.example:5000":{"auth":"YWxpY2U6czNjcjN0"},"other:1":{"auth":"YWxpY2U6czNjcjN0"}}}"#;
        // credHelpers for the registry wins over credsStore and auths; the server is the host.
        let (r, asked) = with_helpers(both, "reg.example:5000", &[("per", password("u1", "p1")), ("store", password("u2", "p2"))]);
        assert_eq!(pair(r.expect("per")), basic("u1", "p1"));
        assert_eq!(asked, [("per".to_string(), "reg.example:5000".to_string())]);
        // Another registry: credsStore, even over its auths entry (Docker ignores auths then).
        let (r, asked) = with_helpers(both, "other:1", &[("store", password("u2", "p2"))]);
        assert_eq!(pair(r.expect("store")), basic("u2", "p2"));
        assert_eq!(asked, [("store".to_string(), "other:1".to_string())]);
        // The helper has nothing: anonymous, and the refusal says so.
        let (r, _) = with_helpers(both, "other:1", &[("store", Answer::NotFound)]);
        let c = r.expect("none");
        assert!(matches!(c.auth, RegistryAuth::Anonymous));
        assert!(c.refused("other:1").contains("docker-credential-store has none"), "{}", c.refused("other:1"));
        // A missing helper: the error says which entry named it.
        let (r, _) = with_helpers(both, "reg.example:5000", &[]);
        let e = r.err().expect("missing").0;
        assert!(e.starts_with("credHelpers: ") && e.contains("docker-credential-per"), "{e}");
        // credHelpers "" turns credsStore off for that registry: auths again.
        let off = r#"{"credHelpers":{"https://reg.example:5000":""},"credsStore":"store",
            "auths":{"reg.example:5000":{"auth":"YWxpY2U6czNjcjN0"}}}"#;
        let (r, asked) = with_helpers(off, "reg.example:5000", &[]);
        assert_eq!(pair(r.expect("auths")), basic("alice", "s3cr3t"));
        assert!(asked.is_empty());
        // Docker Hub: helpers are asked about https://index.docker.io/v1/.
        let hub = r#"{"credHelpers":{"docker.io":"hub"}}"#;
        let (r, asked) = with_helpers(hub, "index.docker.io", &[("hub", password("h", "x"))]);
        assert_eq!(pair(r.expect("hub")), basic("h", "x"));
        assert_eq!(asked[0].1, "https://index.docker.io/v1/");
        // An identity token from a helper: one clear refusal.
        let (r, _) = with_helpers(r#"{"credsStore":"sso"}"#, "h:1", &[("sso", Answer::IdentityToken)]);
        let e = r.err().expect("token").0;
        assert!(e.contains("docker-credential-sso") && e.contains("identity token"), "{e}");
        // Malformed entries are errors, not silent anonymity.
        assert!(with_helpers(r#"{"credsStore":7}"#, "h:1", &[]).0.is_err());
        assert!(with_helpers(r#"{"credHelpers":{"h:1":true}}"#, "h:1", &[]).0.is_err());
    }
}
