//! `smolvm push APP.vm REGISTRY/REPO:TAG` and `smolvm pull REGISTRY/REPO:TAG
//! -o APP.vm`: images as OCI artifacts in any OCI distribution registry,
//! through the ORAS project's `oci-client`.
//!
//! The artifact: an OCI image manifest with `artifactType`
//! [`ARTIFACT_TYPE`], a config blob ([`CONFIG_TYPE`]) holding what `smolvm
//! inspect --json` says of the image, and one layer ([`FILE_TYPE`]): the
//! image file, byte for byte. `pull` checks the layer's SHA-256 against the
//! manifest while it downloads, then runs every check of `smolvm verify`
//! (with `--key`, the signature), and only then renames the file into place
//! with mode 0755; on any failure no file is left.

use crate::bail;
use crate::credentials::{self, CredentialArgs, Credentials};
use crate::error::{Context, Error, Result};
use crate::signing::{fingerprint, read_public, verify_image};
use futures_util::StreamExt;
use linker::sha256::{hex, Sha256};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{OciDescriptor, OciImageManifest, OciManifest, OCI_IMAGE_MEDIA_TYPE};
use oci_client::{Client, Reference, RegistryOperation};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub const ARTIFACT_TYPE: &str = "application/vnd.smolvm.image.v1";
pub const CONFIG_TYPE: &str = "application/vnd.smolvm.image.config.v1+json";
pub const FILE_TYPE: &str = "application/vnd.smolvm.image.file.v1";
/// Chunks of the upload stream (and progress granularity).
const CHUNK: usize = 4 << 20;

#[derive(clap::Args, Debug)]
pub struct PushArgs {
    /// The image to upload (checked like `smolvm verify` first).
    pub image: PathBuf,
    /// Where: REGISTRY/REPO:TAG, e.g. registry.example.com/apps/hello:1.0.
    pub reference: String,
    #[command(flatten)]
    pub credentials: CredentialArgs,
    /// Allow plain HTTP to a registry that is not on loopback (credentials and
    /// images then cross the network unprotected).
    #[arg(long)]
    pub insecure: bool,
}

#[derive(clap::Args, Debug)]
pub struct PullArgs {
    /// What: REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:DIGEST.
    pub reference: String,
    /// Where to write the image (atomically, mode 0755).
    #[arg(short, long, value_name = "APP.vm")]
    pub output: PathBuf,
    /// Require a valid signature by a key in this public key file.
    #[arg(long, value_name = "KEY.pub")]
    pub key: Option<PathBuf>,
    #[command(flatten)]
    pub credentials: CredentialArgs,
    /// Allow plain HTTP to a registry that is not on loopback.
    #[arg(long)]
    pub insecure: bool,
}

fn parse_reference(r: &str) -> Result<Reference> {
    let reference: Reference = r
        .parse()
        .map_err(|e| Error(format!("{r}: not a registry reference REGISTRY/REPO:TAG ({e})")))?;
    if !r.contains('/') {
        bail!("{r}: name the registry too, as in REGISTRY/REPO:TAG");
    }
    Ok(reference)
}

/// `localhost`, `127.0.0.0/8` or `[::1]`, with or without a port.
fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => registry.rsplit_once(':').map_or(registry, |(h, _)| h),
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn client(reference: &Reference, insecure: bool) -> Client {
    let registry = reference.resolve_registry().to_string();
    let protocol = if insecure || is_loopback(&registry) {
        ClientProtocol::HttpsExcept(vec![registry])
    } else {
        ClientProtocol::Https
    };
    Client::new(ClientConfig { protocol, ..Default::default() })
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context(|| "cannot start the network runtime".into())
}

/// One line from a client error (registry errors can be multi-line JSON).
fn one_line(e: impl std::fmt::Display) -> String {
    e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `creds`: what was sent, so an authentication failure says where it came from.
fn registry_error(reference: &str, creds: &Credentials, e: oci_client::errors::OciDistributionError) -> Error {
    use oci_client::errors::OciDistributionError as E;
    let registry = reference.split('/').next().unwrap_or(reference);
    let why = match &e {
        E::AuthenticationFailure(_) | E::UnauthorizedError { .. } => {
            creds.refused(registry)
        }
        E::ImageManifestNotFoundError(_) => "not found in the registry (no such repository or tag)".to_string(),
        E::RegistryError { envelope, .. }
            if envelope.errors.iter().any(|x| {
                let c = format!("{:?}", x.code);
                c.contains("Unknown") || c.contains("NotFound")
            }) =>
        {
            "not found in the registry (no such repository or tag)".to_string()
        }
        E::RegistryError { envelope, .. }
            if envelope.errors.iter().any(|x| {
                let c = format!("{:?}", x.code);
                c.contains("Unauthorized") || c.contains("Denied")
            }) =>
        {
            creds.refused(registry)
        }
        _ if ["401 Unauthorized", "403 Forbidden"].iter().any(|c| e.to_string().contains(c)) => {
            creds.refused(registry)
        }
        _ => one_line(&e),
    };
    Error(format!("{reference}: {why}"))
}

/// Progress on stderr for a person watching (a terminal, not CI).
struct Progress {
    what: String,
    total: u64,
    done: u64,
    shown: bool,
    enabled: bool,
}

impl Progress {
    fn new(what: String, total: u64) -> Progress {
        use std::io::IsTerminal;
        let enabled = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none() && total >= 8 << 20;
        Progress { what, total, done: 0, shown: false, enabled }
    }

    fn add(&mut self, n: u64) {
        self.done += n;
        if self.enabled {
            let mib = |b: u64| b as f64 / f64::from(1 << 20);
            eprint!("\rsmolvm: {} {:.1} / {:.1} MiB", self.what, mib(self.done), mib(self.total));
            self.shown = true;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.shown {
            eprintln!();
        }
    }
}

pub fn push(a: &PushArgs) -> Result<()> {
    let reference = parse_reference(&a.reference)?;
    let verified = verify_image(&a.image, None)?;
    let config = crate::inspect::json_of(&a.image)?.into_bytes();
    let creds = credentials::resolve(&a.credentials, reference.resolve_registry())?;
    let size = verified.image.file_len();
    let digest = {
        let mut f = std::fs::File::open(&a.image).context(|| a.image.display().to_string())?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = f.read(&mut buf).context(|| a.image.display().to_string())?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        format!("sha256:{}", hex(&h.finish()))
    };
    let config_digest = format!("sha256:{}", hex(&linker::sha256::sha256(&config)));
    let title = a.image.file_name().map_or_else(|| "app.vm".into(), |n| n.to_string_lossy().into_owned());
    let manifest = OciImageManifest {
        schema_version: 2,
        media_type: Some(OCI_IMAGE_MEDIA_TYPE.to_string()),
        artifact_type: Some(ARTIFACT_TYPE.to_string()),
        config: OciDescriptor {
            media_type: CONFIG_TYPE.into(),
            digest: config_digest.clone(),
            size: config.len() as i64,
            ..Default::default()
        },
        layers: vec![OciDescriptor {
            media_type: FILE_TYPE.into(),
            digest: digest.clone(),
            size: i64::try_from(size).map_err(|_| Error("image too large".into()))?,
            annotations: Some(BTreeMap::from([("org.opencontainers.image.title".to_string(), title)])),
            ..Default::default()
        }],
        ..Default::default()
    };
    let client = client(&reference, a.insecure);
    let rt = runtime()?;
    let path = a.image.clone();
    let manifest_url = rt
        .block_on(async {
            client.auth(&reference, &creds.auth, RegistryOperation::Push).await?;
            if !client.blob_exists(&reference, &digest).await? {
                let stream = file_stream(&path, size)?;
                client.push_blob_stream(&reference, stream, &digest, Some(size)).await?;
            }
            client.push_blob(&reference, config.clone(), &config_digest).await?;
            client.push_manifest(&reference, &OciManifest::Image(manifest)).await
        })
        .map_err(|e| registry_error(&a.reference, &creds, e))?;
    let _ = manifest_url;
    let signer = verified.signer.map_or_else(|| "unsigned".to_string(), |k| format!("signed by {}", fingerprint(&k)));
    println!("{}: pushed to {} ({size} bytes, {digest}, {signer})", a.image.display(), a.reference);
    Ok(())
}

/// The image file as a stream of chunks, with progress.
fn file_stream(
    path: &Path,
    size: u64,
) -> oci_client::errors::Result<impl futures_util::Stream<Item = oci_client::errors::Result<bytes::Bytes>> + Send + 'static>
{
    let file = std::fs::File::open(path)?;
    let progress = Progress::new(format!("pushing {}", path.display()), size);
    Ok(futures_util::stream::unfold((file, progress), |(mut file, mut progress)| async move {
        let mut buf = vec![0u8; CHUNK];
        match file.read(&mut buf) {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                progress.add(n as u64);
                Some((Ok(bytes::Bytes::from(buf)), (file, progress)))
            }
            Err(e) => Some((Err(e.into()), (file, progress))),
        }
    }))
}

/// The one layer of a smolvm artifact, or why this is not one.
fn file_layer(manifest: OciManifest, reference: &str) -> Result<OciDescriptor> {
    let OciManifest::Image(m) = manifest else {
        bail!("{reference}: an image index, not a smolvm image (was it pushed with `smolvm push`?)");
    };
    let is_smolvm = m.artifact_type.as_deref() == Some(ARTIFACT_TYPE) || m.config.media_type == CONFIG_TYPE;
    if !is_smolvm {
        bail!(
            "{reference}: not a smolvm image (artifact type {}; was it pushed with `smolvm push`?)",
            m.artifact_type.as_deref().unwrap_or(&m.config.media_type)
        );
    }
    match m.layers.as_slice() {
        [l] if l.media_type == FILE_TYPE && l.size > 0 && l.digest.starts_with("sha256:") => Ok(l.clone()),
        _ => bail!("{reference}: a smolvm artifact must hold exactly one {FILE_TYPE} layer with a sha256 digest"),
    }
}

pub fn pull(a: &PullArgs) -> Result<()> {
    let reference = parse_reference(&a.reference)?;
    let keys = a.key.as_deref().map(read_public).transpose()?;
    let creds = credentials::resolve(&a.credentials, reference.resolve_registry())?;
    let client = client(&reference, a.insecure);
    let rt = runtime()?;
    let tmp = crate::atomic::TempFile::beside(&a.output)?;
    let (layer, actual) = rt.block_on(fetch(&client, &reference, &creds, &a.reference, &tmp))?;
    if actual != layer.digest {
        bail!(
            "{}: the registry sent a file whose digest {actual} is not the manifest's {}; refused, nothing written",
            a.reference,
            layer.digest
        );
    }
    // Every `smolvm verify` check on the downloaded bytes, before they get the name.
    let tmp_name = format!("{}: ", tmp.display());
    let v = verify_image(Path::new(&tmp.display()), keys.as_deref()).map_err(|e| {
        Error(format!("{}: refused, nothing written: {}", a.reference, e.0.replace(&tmp_name, "")))
    })?;
    use std::os::unix::fs::PermissionsExt;
    tmp.commit(&a.output, Some(std::fs::Permissions::from_mode(0o755)))?;
    let signer = match (v.signer, &keys) {
        (Some(k), Some(_)) => format!("signed by trusted key {}", fingerprint(&k)),
        (Some(k), None) => format!("signed by {} (pass --key to require a key)", fingerprint(&k)),
        (None, _) => "unsigned".into(),
    };
    println!("{}: pulled {} ({} bytes, verified, {signer})", a.output.display(), a.reference, v.image.file_len());
    Ok(())
}

/// Downloads the layer into `tmp`; returns its descriptor and the digest of what arrived.
async fn fetch(
    client: &Client,
    reference: &Reference,
    creds: &Credentials,
    name: &str,
    tmp: &crate::atomic::TempFile,
) -> Result<(OciDescriptor, String)> {
    let (manifest, _) = client.pull_manifest(reference, &creds.auth).await.map_err(|e| registry_error(name, creds, e))?;
    let layer = file_layer(manifest, name)?;
    let expected = u64::try_from(layer.size).map_err(|_| Error(format!("{name}: bad layer size")))?;
    let mut stream = client
        .pull_blob_stream(reference, &layer)
        .await
        .map_err(|e| registry_error(name, creds, e))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, tmp.file());
    let mut h = Sha256::new();
    let mut got = 0u64;
    let mut progress = Progress::new(format!("pulling {name}"), expected);
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) if e.to_string().contains("igest") => {
                bail!("{name}: the registry sent a file whose digest is not the manifest's {}; refused, nothing written", layer.digest)
            }
            Err(e) => bail!("{name}: download failed: {}", one_line(e)),
        };
        got += chunk.len() as u64;
        if got > expected {
            bail!("{name}: the registry sent more than the manifest's {expected} bytes; refused, nothing written");
        }
        h.update(&chunk);
        out.write_all(&chunk).context(|| tmp.display())?;
        progress.add(chunk.len() as u64);
    }
    out.flush().context(|| tmp.display())?;
    if got != expected {
        bail!("{name}: the registry sent {got} of the manifest's {expected} bytes; refused, nothing written");
    }
    Ok((layer, format!("sha256:{}", hex(&h.finish()))))
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn only_loopback_registries_get_plain_http() {
        for r in ["localhost", "localhost:5000", "127.0.0.1:5000", "127.1.2.3", "[::1]:5000", "[::1]"] {
            assert!(is_loopback(r), "{r}");
        }
        for r in ["registry.example", "10.0.0.1:5000", "localhost.example:5000", "[::2]:1", "128.0.0.1"] {
            assert!(!is_loopback(r), "{r}");
        }
    }
}
