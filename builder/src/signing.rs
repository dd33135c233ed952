//! Ed25519 image signatures: `smolvm keygen`, `smolvm sign`, and the
//! signature half of `smolvm verify` (also run by `smolvm pull`). The format
//! (section, signed message, key lines) is `linker::signature`.

use crate::bail;
use crate::error::{Context, Error, Result};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use linker::abi::SECTION_ALIGN;
use linker::image::{Image, Kind, Section};
use linker::sha256::{hex, sha256};
use linker::signature::{self, Signature, PUBLIC_PREFIX, SECRET_PREFIX, STUB_MARK};
use linker::write::{read_section, verify};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct KeygenArgs {
    /// Where to write the secret key (mode 0600); the public key goes to `<KEY>.pub`.
    #[arg(short, long, value_name = "KEY")]
    pub output: PathBuf,
    /// Replace existing key files.
    #[arg(long)]
    pub force: bool,
}

#[derive(clap::Args, Debug)]
pub struct SignArgs {
    /// The secret key written by `smolvm keygen`.
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
    /// The image to sign, in place (replaces an earlier signature).
    pub image: PathBuf,
}

/// `SHA256:` and the first 16 bytes of the key's SHA-256, in hex.
pub fn fingerprint(public_key: &[u8; 32]) -> String {
    format!("SHA256:{}", hex(&sha256(public_key)[..16]))
}

pub fn public_line(key: &VerifyingKey) -> String {
    format!("{}{}", String::from_utf8_lossy(PUBLIC_PREFIX), hex(key.as_bytes()))
}

pub fn keygen(a: &KeygenArgs) -> Result<()> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| Error(format!("no randomness for a key: {e}")))?;
    let key = SigningKey::from_bytes(&seed);
    let pub_path = pub_path(&a.output);
    let secret = format!("{}{}\n", String::from_utf8_lossy(SECRET_PREFIX), hex(&seed));
    write_new(&a.output, secret.as_bytes(), 0o600, a.force)?;
    let public = format!("{} {}\n", public_line(&key.verifying_key()), file_name(&a.output));
    write_new(&pub_path, public.as_bytes(), 0o644, a.force)?;
    println!(
        "{}: secret key; {}: public key {}",
        a.output.display(),
        pub_path.display(),
        fingerprint(key.verifying_key().as_bytes())
    );
    Ok(())
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

fn pub_path(key: &Path) -> PathBuf {
    let mut s = key.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32, force: bool) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).mode(mode);
    if force {
        o.create(true).truncate(true);
    } else {
        o.create_new(true);
    }
    let mut f = o.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => {
            Error(format!("{}: already exists (pass --force to replace it)", path.display()))
        }
        _ => Error(format!("{}: {e}", path.display())),
    })?;
    f.write_all(bytes).context(|| path.display().to_string())
}

/// Reads a secret key file.
pub fn read_secret(path: &Path) -> Result<SigningKey> {
    let text = std::fs::read(path).context(|| format!("key {}", path.display()))?;
    let seed = signature::parse_secret_line(&text).ok_or_else(|| {
        Error(format!("key {}: not a smolvm secret key (make one with `smolvm keygen -o KEY`)", path.display()))
    })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Reads a public key file or trust list: every key line in it.
pub fn read_public(path: &Path) -> Result<Vec<[u8; 32]>> {
    let text = std::fs::read(path).context(|| format!("key {}", path.display()))?;
    let mut keys = Vec::new();
    for (n, line) in text.split(|&b| b == b'\n').enumerate() {
        match signature::parse_public_line(line) {
            Ok(Some(k)) => keys.push(k),
            Ok(None) => {}
            Err(()) => bail!(
                "key {}: line {} is not `smolvm-ed25519 <64 hex digits>` (a secret key? pass KEY.pub)",
                path.display(),
                n + 1
            ),
        }
    }
    if keys.is_empty() {
        bail!("key {}: no public key in it", path.display());
    }
    Ok(keys)
}

/// The signature the image carries, if any (not yet verified).
pub fn embedded(file: &mut File, image: &Image) -> Result<Option<Signature>> {
    let Some(s) = image.section(Kind::Signature) else { return Ok(None) };
    let bytes = read_section(file, &s).context(|| "signature".into())?;
    match Signature::parse(&bytes) {
        Some(sig) => Ok(Some(sig)),
        None => bail!("image: signature section is malformed (re-sign it with `smolvm sign`)"),
    }
}

/// Checks the signature over an image whose digests and padding were
/// already checked (`linker::write::verify`).
pub fn check_signature(image: &Image, sig: &Signature) -> Result<()> {
    let mut buf = [0u8; signature::MAX_MESSAGE_LEN];
    let signed_len = signature::signed_len(image).map_err(|e| Error(e.to_string()))?;
    let msg = signature::message(image, signed_len, &mut buf)
        .ok_or_else(|| Error("image: signature does not cover the sections before it".into()))?;
    let key = VerifyingKey::from_bytes(&sig.public_key)
        .map_err(|_| Error("image: signature's public key is invalid".into()))?;
    key.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(&sig.signature))
        .map_err(|_| Error("image: signature is invalid (the image or its signature was altered)".into()))
}

/// What `verify` found: the image and, for a signed one, its signer.
pub struct Verified {
    pub image: Image,
    pub signer: Option<[u8; 32]>,
}

/// Every check of `smolvm verify`: trailer, digests, padding, the signature
/// if there is one, and with `trusted` keys, that one of them signed it.
pub fn verify_image(path: &Path, trusted: Option<&[[u8; 32]]>) -> Result<Verified> {
    let mut f = File::open(path).context(|| path.display().to_string())?;
    let image = verify(&mut f).map_err(|e| Error(format!("{}: {e}", path.display())))?;
    let sig = embedded(&mut f, &image).map_err(|e| Error(format!("{}: {e}", path.display())))?;
    if let Some(sig) = &sig {
        check_signature(&image, sig).map_err(|e| Error(format!("{}: {e}", path.display())))?;
    }
    if let Some(keys) = trusted {
        match &sig {
            None => bail!("{}: image is not signed (sign it with `smolvm sign --key KEY`)", path.display()),
            Some(s) if !keys.contains(&s.public_key) => bail!(
                "{}: signed by {}, which is not a given key",
                path.display(),
                fingerprint(&s.public_key)
            ),
            Some(_) => {}
        }
    }
    Ok(Verified { image, signer: sig.map(|s| s.public_key) })
}

fn align_up(v: u64) -> u64 {
    v.div_ceil(SECTION_ALIGN) * SECTION_ALIGN
}

pub fn sign(a: &SignArgs) -> Result<()> {
    let key = read_secret(&a.key)?;
    // In place means the image the path names: through a symlink (a
    // deployed `app -> app-1.2.vm`), the rename would replace the link
    // with a signed copy and leave the image itself unsigned.
    let path = &crate::atomic::through_symlinks(&a.image);
    let Verified { image, .. } = verify_image(path, None)?;
    let mut f = File::open(path).context(|| path.display().to_string())?;
    let stub = image.section(Kind::Stub).ok_or_else(|| Error("image: no stub".into()))?;
    let stub_bytes = read_section(&mut f, &stub).context(|| path.display().to_string())?;
    if !stub_bytes.windows(STUB_MARK.len()).any(|w| w == STUB_MARK) {
        bail!(
            "{}: its stub predates signatures and would refuse a signed image; rebuild it with this smolvm first",
            path.display()
        );
    }
    let mut sections: Vec<Section> =
        image.sections().iter().filter(|s| s.kind != Kind::Signature).copied().collect();
    let signed_len = align_up(sections.last().map_or(0, |s| s.end()));
    let mut sig_section = Section {
        kind: Kind::Signature,
        flags: 0,
        offset: signed_len,
        len: signature::LEN as u64,
        fast_digest: 0,
        sha256: [0; 32],
    };
    let file_len = signed_len + sig_section.len + linker::image::TRAILER_LEN as u64;
    // The message covers only the other sections: build it on their table.
    let unsigned = Image::encode(&sections, signed_len + linker::image::TRAILER_LEN as u64)
        .map_err(|e| Error(e.to_string()))?;
    let unsigned = Image::parse(&unsigned, signed_len + linker::image::TRAILER_LEN as u64)
        .map_err(|e| Error(e.to_string()))?;
    let mut buf = [0u8; signature::MAX_MESSAGE_LEN];
    let msg = signature::message(&unsigned, signed_len, &mut buf)
        .ok_or_else(|| Error("image: sections overlap the signature".into()))?;
    let sig = Signature {
        public_key: key.verifying_key().to_bytes(),
        signature: key.sign(msg).to_bytes(),
    };
    let sig_bytes = sig.encode();
    sig_section.fast_digest = linker::xxh64::xxh64(&sig_bytes);
    sig_section.sha256 = sha256(&sig_bytes);
    sections.push(sig_section);
    let trailer = Image::encode(&sections, file_len).map_err(|e| Error(e.to_string()))?;

    // A new file beside the old one, renamed over it: a crash leaves one or the other.
    let tmp = crate::atomic::TempFile::beside(path)?;
    {
        let mut out = tmp.file();
        // The sections up to the last one's end, then zeros up to the
        // signature (where the old file has its trailer or old signature).
        let last_end = sections.iter().filter(|s| s.kind != Kind::Signature).map(|s| s.end()).max().unwrap_or(0);
        f.seek(SeekFrom::Start(0)).context(|| path.display().to_string())?;
        let copied = std::io::copy(&mut (&mut f).take(last_end), &mut out).context(|| path.display().to_string())?;
        if copied != last_end {
            bail!("{}: changed while signing", path.display());
        }
        let pad = usize::try_from(signed_len - last_end).unwrap_or(0);
        out.write_all(&vec![0u8; pad]).context(|| tmp.display())?;
        out.write_all(&sig_bytes).context(|| tmp.display())?;
        out.write_all(&trailer).context(|| tmp.display())?;
    }
    let mode = std::fs::metadata(path).context(|| path.display().to_string())?.permissions();
    tmp.commit(path, Some(mode))?;
    println!("{}: signed by {}", path.display(), fingerprint(&sig.public_key));
    Ok(())
}
