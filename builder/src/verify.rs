//! `smolvm verify app.vm`: checks the trailer, both digests (XXH64 and
//! SHA-256) of every section and the zero padding between them. Exit 0 when
//! intact; otherwise the error names the damaged section.

use crate::error::{Error, Result};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// The image to check.
    pub image: PathBuf,
}

pub fn run(a: &VerifyArgs) -> Result<()> {
    let mut f =
        std::fs::File::open(&a.image).map_err(|e| Error(format!("{}: {e}", a.image.display())))?;
    let image =
        linker::write::verify(&mut f).map_err(|e| Error(format!("{}: {e}", a.image.display())))?;
    let names: Vec<&str> = image.sections().iter().map(|s| s.kind.name()).collect();
    println!(
        "{}: OK ({} sections intact: {})",
        a.image.display(),
        names.len(),
        names.join(", ")
    );
    Ok(())
}
