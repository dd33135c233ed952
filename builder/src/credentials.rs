//! Registry credentials for push/pull: `--username` with `--password-stdin`,
//! else the `auths` entry of the Docker config file
//! (`$DOCKER_CONFIG/config.json`, default `~/.docker/config.json`), else
//! anonymous. Credential helpers (`credsStore`) are not run.

use crate::bail;
use crate::error::{Context, Error, Result};
use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use std::io::BufRead;
use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone)]
pub struct CredentialArgs {
    /// Registry user name; the password is read from standard input (--password-stdin).
    #[arg(long, requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the password (or token) for --username from the first line of standard input.
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
}

fn docker_config() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => Some(PathBuf::from(dir).join("config.json")),
        None => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json")),
    }
}

/// The host part of an `auths` key: `https://host:port/v1/` -> `host:port`.
fn auths_host(key: &str) -> &str {
    let k = key.split_once("://").map_or(key, |(_, rest)| rest);
    k.split('/').next().unwrap_or(k)
}

/// The credentials for `registry` (`host[:port]`).
pub fn resolve(a: &CredentialArgs, registry: &str) -> Result<RegistryAuth> {
    if let Some(user) = &a.username {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context(|| "reading the password from stdin".into())?;
        let password = line.trim_end_matches(['\n', '\r']);
        if password.is_empty() {
            bail!("--password-stdin: standard input held no password");
        }
        return Ok(RegistryAuth::Basic(user.clone(), password.to_string()));
    }
    let Some(path) = docker_config() else { return Ok(RegistryAuth::Anonymous) };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RegistryAuth::Anonymous),
        Err(e) => bail!("{}: {e}", path.display()),
    };
    from_docker_config(&text, registry).map_err(|e| Error(format!("{}: {}", path.display(), e.0)))
}

fn from_docker_config(text: &str, registry: &str) -> Result<RegistryAuth> {
    let config: serde_json::Value =
        serde_json::from_str(text).map_err(|e| Error(format!("not valid JSON ({e})")))?;
    let Some(auths) = config.get("auths").and_then(|a| a.as_object()) else {
        return Ok(RegistryAuth::Anonymous);
    };
    let Some(entry) = auths.iter().find(|(k, _)| auths_host(k) == registry).map(|(_, v)| v) else {
        return Ok(RegistryAuth::Anonymous);
    };
    if let Some(auth) = entry.get("auth").and_then(|v| v.as_str()).filter(|s| !s.is_empty()) {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| Error(format!("auths.{registry}.auth is not base64")))?;
        let pair = String::from_utf8(raw).map_err(|_| Error(format!("auths.{registry}.auth is not UTF-8")))?;
        let Some((user, password)) = pair.split_once(':') else {
            bail!("auths.{registry}.auth is not base64 of user:password");
        };
        return Ok(RegistryAuth::Basic(user.into(), password.into()));
    }
    match (entry.get("username").and_then(|v| v.as_str()), entry.get("password").and_then(|v| v.as_str())) {
        (Some(u), Some(p)) => Ok(RegistryAuth::Basic(u.into(), p.into())),
        _ => Ok(RegistryAuth::Anonymous),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_auths_entries() {
        let basic = |u: &str, p: &str| (u.to_string(), p.to_string());
        let pair = |a: RegistryAuth| match a {
            RegistryAuth::Basic(u, p) => (u, p),
            other => panic!("{other:?}"),
        };
        let cfg = r#"{"auths":{"https://127.0.0.1:5000/v1/":{"auth":"YWxpY2U6czNjcjN0"},
            "reg.example:443":{"username":"bob","password":"pw"}}}"#;
        assert_eq!(pair(from_docker_config(cfg, "127.0.0.1:5000").expect("ok")), basic("alice", "s3cr3t"));
        assert_eq!(pair(from_docker_config(cfg, "reg.example:443").expect("ok")), basic("bob", "pw"));
        assert!(matches!(from_docker_config(cfg, "other:1").expect("ok"), RegistryAuth::Anonymous));
        assert!(from_docker_config(r#"{"auths":{"h":{"auth":"!!"}}}"#, "h").is_err());
        assert!(from_docker_config("{", "h").is_err());
    }
}
