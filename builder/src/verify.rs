//! `smolvm verify app.vm [--key KEY.pub]`: checks the trailer, both digests
//! (XXH64 and SHA-256) of every section, the zero padding between them, and
//! the signature if the image has one. With `--key`, the image must be
//! signed by (one of) the key(s) in that file. Exit 0 when intact; otherwise
//! the error names the damaged section.

use crate::error::Result;
use crate::signing::{fingerprint, read_public, verify_image};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// The image to check.
    pub image: PathBuf,
    /// Require a valid signature by a key in this public key file (`KEY.pub`,
    /// or a trust list of `smolvm-ed25519 <hex>` lines).
    #[arg(long, value_name = "KEY.pub")]
    pub key: Option<PathBuf>,
}

pub fn run(a: &VerifyArgs) -> Result<()> {
    let keys = a.key.as_deref().map(read_public).transpose()?;
    let v = verify_image(&a.image, keys.as_deref())?;
    let names: Vec<&str> = v.image.sections().iter().map(|s| s.kind.name()).collect();
    let signer = match (&v.signer, &keys) {
        (Some(k), Some(_)) => format!("; signed by trusted key {}", fingerprint(k)),
        (Some(k), None) => format!("; signature valid, by {} (pass --key to require a key)", fingerprint(k)),
        (None, _) => "; unsigned".into(),
    };
    println!(
        "{}: OK ({} sections intact: {}){signer}",
        a.image.display(),
        names.len(),
        names.join(", ")
    );
    Ok(())
}
