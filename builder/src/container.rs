//! Container images as root filesystems: `docker save` archives (classic
//! layout and OCI-in-docker, both described by `manifest.json`) and OCI
//! image layouts (`index.json`, multi-platform indexes resolved to
//! linux/amd64). Gives the layer files in order and the image config
//! (`Entrypoint`, `Cmd`, `Env`, `WorkingDir`, `User`). OCI blobs are checked
//! against their SHA-256 digests.

use crate::bail;
use crate::error::{Context, Error, Result};
use crate::json::Json;
use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Default, PartialEq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
}

pub struct Image {
    pub layers: Vec<PathBuf>,
    pub config: ImageConfig,
}

/// Reads a JSON file of the image; messages name it relative to `dir`
/// (the archive or layout), never by a temporary path.
fn read_json(dir: &Path, path: &Path) -> Result<Json> {
    let shown = path.strip_prefix(dir).unwrap_or(path).display().to_string();
    let md = fs::metadata(path).context(|| shown.clone())?;
    if md.len() > crate::json::MAX_LEN as u64 {
        bail!("{shown}: larger than 16 MiB");
    }
    let bytes = fs::read(path).context(|| shown.clone())?;
    Json::parse(&bytes).map_err(|e| Error(format!("{shown}: bad JSON: {e}")))
}

/// A relative path inside `dir` (no `..`, not absolute). Symlinks (`docker
/// save` links duplicate layers) are followed only inside `dir`, so an
/// archive cannot make the builder read a host file.
fn inside(dir: &Path, rel: &str, what: &str) -> Result<PathBuf> {
    let p = Path::new(rel);
    if p.components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        bail!("{what} path `{rel}` leaves the archive: refused");
    }
    crate::rootfs::resolve(dir, rel.as_bytes()).map_err(|e| Error(format!("{what} `{rel}`: {e}")))
}

/// Parses an image config blob.
pub fn parse_config(j: &Json, what: &str) -> Result<ImageConfig> {
    if let Some(os) = j.get("os").and_then(Json::str) {
        if os != "linux" {
            bail!("{what}: image is for os `{os}`, not linux");
        }
    }
    if let Some(arch) = j.get("architecture").and_then(Json::str) {
        if arch != "amd64" {
            bail!("{what}: image is for architecture `{arch}`, not amd64");
        }
    }
    let c = j.get("config").unwrap_or(&Json::Null);
    let list = |k: &str| -> Result<Vec<String>> {
        c.get(k).map_or(Ok(Vec::new()), |v| {
            v.strings()
                .ok_or_else(|| Error(format!("{what}: config {k} is not a list of strings")))
        })
    };
    let text = |k: &str| {
        c.get(k)
            .and_then(Json::str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    Ok(ImageConfig {
        entrypoint: list("Entrypoint")?,
        cmd: list("Cmd")?,
        env: list("Env")?,
        workdir: text("WorkingDir"),
        user: text("User"),
    })
}

/// A `docker save` archive already unpacked into `dir`.
pub fn docker_archive(dir: &Path) -> Result<Image> {
    let manifest = dir.join("manifest.json");
    if !manifest.exists() && dir.join("index.json").exists() {
        return oci_layout(dir);
    }
    let m = read_json(dir, &manifest)
        .map_err(|e| Error(format!("{e} (is this a `docker save` archive?)")))?;
    let images = m.arr();
    let [image] = images else {
        let tags: Vec<String> = images
            .iter()
            .flat_map(|i| {
                i.get("RepoTags")
                    .and_then(Json::strings)
                    .unwrap_or_default()
            })
            .collect();
        bail!(
            "manifest.json lists {} images ({}): save exactly one image",
            images.len(),
            tags.join(", ")
        );
    };
    let config_path = image
        .get("Config")
        .and_then(Json::str)
        .ok_or_else(|| Error("manifest.json: no Config".into()))?;
    let config = parse_config(
        &read_json(dir, &inside(dir, config_path, "Config")?)?,
        config_path,
    )?;
    let mut layers = Vec::new();
    for l in image.get("Layers").map(Json::arr).unwrap_or_default() {
        let rel = l
            .str()
            .ok_or_else(|| Error("manifest.json: a layer is not a string".into()))?;
        layers.push(inside(dir, rel, "layer")?);
    }
    Ok(Image { layers, config })
}

/// `sha256:<hex>` → the blob's path, checked against its digest.
fn blob(dir: &Path, desc: &Json) -> Result<PathBuf> {
    let digest = desc
        .get("digest")
        .and_then(Json::str)
        .ok_or_else(|| Error("OCI descriptor without digest".into()))?;
    let Some(hex) = digest.strip_prefix("sha256:").filter(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    }) else {
        bail!("OCI digest `{digest}` is not sha256:<64 hex digits>");
    };
    let path = inside(dir, &format!("blobs/sha256/{hex}"), "blob")?;
    let mut f = fs::File::open(&path).context(|| format!("blob {digest}"))?;
    let mut sha = linker::sha256::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).context(|| format!("blob {digest}"))?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
    }
    if linker::sha256::hex(&sha.finish()) != hex {
        bail!("blob {digest} is corrupt (digest mismatch)");
    }
    Ok(path)
}

fn is_index(desc: &Json, body: &Json) -> bool {
    let mt = desc
        .get("mediaType")
        .or_else(|| body.get("mediaType"))
        .and_then(Json::str)
        .unwrap_or("");
    mt.contains("image.index")
        || mt.contains("manifest.list")
        || (body.get("manifests").is_some() && body.get("layers").is_none())
}

/// Picks the linux/amd64 entry of a list of descriptors, or fails listing them.
fn pick<'a>(manifests: &'a [Json], what: &str) -> Result<&'a Json> {
    if let [only] = manifests {
        return Ok(only);
    }
    let platform = |d: &Json| {
        let p = d.get("platform");
        let f = |k: &str| {
            p.and_then(|p| p.get(k))
                .and_then(Json::str)
                .unwrap_or("?")
                .to_string()
        };
        format!("{}/{}", f("os"), f("architecture"))
    };
    if let Some(d) = manifests.iter().find(|d| platform(d) == "linux/amd64") {
        return Ok(d);
    }
    let all: Vec<String> = manifests.iter().map(platform).collect();
    bail!(
        "{what}: no linux/amd64 image among the platforms: {}",
        all.join(", ")
    );
}

/// An OCI image layout directory.
pub fn oci_layout(dir: &Path) -> Result<Image> {
    let index = read_json(dir, &dir.join("index.json"))
        .map_err(|e| Error(format!("{e} (is this an OCI image layout?)")))?;
    let mut desc = pick(
        index.get("manifests").map(Json::arr).unwrap_or_default(),
        "index.json",
    )?
    .clone();
    for _ in 0..8 {
        let body = read_json(dir, &blob(dir, &desc)?)?;
        if is_index(&desc, &body) {
            desc = pick(
                body.get("manifests").map(Json::arr).unwrap_or_default(),
                "image index",
            )?
            .clone();
            continue;
        }
        let config_desc = body
            .get("config")
            .ok_or_else(|| Error("OCI manifest without config".into()))?;
        let config = parse_config(&read_json(dir, &blob(dir, config_desc)?)?, "image config")?;
        let layers = body
            .get("layers")
            .map(Json::arr)
            .unwrap_or_default()
            .iter()
            .map(|l| blob(dir, l))
            .collect::<Result<_>>()?;
        return Ok(Image { layers, config });
    }
    bail!("index.json: image indexes nested too deeply")
}

/// `user`, `uid`, `user:group`, `uid:gid` → numeric `uid:gid`, names looked
/// up in the rootfs's /etc/passwd and /etc/group.
pub fn resolve_user(root: &Path, spec: &str) -> Result<String> {
    let table = |file: &str| fs::read_to_string(root.join(file)).unwrap_or_default();
    let (passwd, group) = (table("etc/passwd"), table("etc/group"));
    let find = |text: &str, name: &str| -> Option<(u32, u32)> {
        text.lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.first() == Some(&name))
            .and_then(|f| {
                Some((
                    f.get(2)?.parse().ok()?,
                    f.get(3).and_then(|g| g.parse().ok()).unwrap_or(0),
                ))
            })
    };
    let (u, g) = spec
        .split_once(':')
        .map_or((spec, None), |(u, g)| (u, Some(g)));
    let (uid, user_gid) = match u.parse::<u32>() {
        Ok(n) => (
            n,
            passwd
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.get(2) == Some(&u))
                .and_then(|f| f.get(3)?.parse().ok())
                .unwrap_or(0),
        ),
        Err(_) => find(&passwd, u).ok_or_else(|| {
            Error(format!(
                "image user `{u}` not found in the rootfs's /etc/passwd"
            ))
        })?,
    };
    let gid = match g {
        None => user_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => find(&group, g).map(|(gid, _)| gid).ok_or_else(|| {
                Error(format!(
                    "image group `{g}` not found in the rootfs's /etc/group"
                ))
            })?,
        },
    };
    Ok(format!("{uid}:{gid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_fields_and_platform_checks() {
        let j = Json::parse(br#"{"os":"linux","architecture":"amd64","config":{"Entrypoint":null,"Cmd":["sh"],"Env":["A=1"],"WorkingDir":"","User":"app"}}"#).expect("json");
        let c = parse_config(&j, "t").expect("valid");
        assert_eq!(
            c,
            ImageConfig {
                cmd: vec!["sh".into()],
                env: vec!["A=1".into()],
                user: Some("app".into()),
                ..Default::default()
            }
        );
        let arm = Json::parse(br#"{"architecture":"arm64"}"#).expect("json");
        assert!(parse_config(&arm, "t")
            .expect_err("arm")
            .0
            .contains("arm64"));
        let bad = Json::parse(br#"{"config":{"Cmd":"sh"}}"#).expect("json");
        assert!(parse_config(&bad, "t").is_err());
    }

    #[test]
    fn users_resolve_through_the_rootfs() {
        let d = std::env::temp_dir().join(format!("smolvm-user-{}", std::process::id()));
        fs::create_dir_all(d.join("etc")).expect("mkdir");
        fs::write(
            d.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .expect("write");
        fs::write(d.join("etc/group"), "root:x:0:\nstaff:x:50:\n").expect("write");
        assert_eq!(resolve_user(&d, "app").ok().as_deref(), Some("1000:1001"));
        assert_eq!(resolve_user(&d, "1000").ok().as_deref(), Some("1000:1001"));
        assert_eq!(
            resolve_user(&d, "app:staff").ok().as_deref(),
            Some("1000:50")
        );
        assert_eq!(resolve_user(&d, "42:7").ok().as_deref(), Some("42:7"));
        assert!(resolve_user(&d, "nobody").is_err());
        assert!(resolve_user(&d, "app:nogroup").is_err());
        fs::remove_dir_all(&d).expect("cleanup");
    }

    #[test]
    fn paths_must_stay_inside() {
        let d = std::env::temp_dir().join(format!("smolvm-inside-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("abc")).expect("mkdir");
        fs::write(d.join("abc/layer.tar"), b"").expect("write");
        std::os::unix::fs::symlink("../abc/layer.tar", d.join("dup.tar")).expect("ln");
        std::os::unix::fs::symlink("/etc/passwd", d.join("host.tar")).expect("ln");
        std::os::unix::fs::symlink("../../../../etc/passwd", d.join("up.tar")).expect("ln");
        assert!(inside(&d, "../etc/passwd", "layer").is_err());
        assert!(inside(&d, "/etc/passwd", "layer").is_err());
        assert_eq!(
            inside(&d, "abc/layer.tar", "layer").ok(),
            Some(d.join("abc/layer.tar"))
        );
        assert_eq!(
            inside(&d, "dup.tar", "layer").ok(),
            Some(d.join("abc/layer.tar"))
        );
        // Symlinks out of the archive resolve inside it (and are missing there).
        assert!(inside(&d, "host.tar", "layer").is_err());
        assert!(inside(&d, "up.tar", "layer").is_err());
        fs::remove_dir_all(&d).expect("cleanup");
    }
}
