//! The payload: the stub's own image file (`/proc/self/exe`), its trailer
//! validated by `linker::image` before anything else happens, and checked
//! reads of its sections.

pub use crate::sys::mm::Mapped;
use linker::image::{self, Image, ImageError, Kind, Section, TRAILER_LEN};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{self, Mode, OFlags};
use rustix::io::{self, Errno};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadError {
    /// The file could not be opened or read.
    Io(Errno),
    /// The trailer or a section failed validation.
    Image(ImageError),
}

pub struct Payload {
    file: OwnedFd,
    image: Image,
}

/// Reads exactly `buf.len()` bytes at `offset` (`EIO` if the file ends first).
pub fn pread_exact(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<()> {
    crate::sys::io::pread_exact(fd, buf.into(), offset)
}

fn open_ro(path: &core::ffi::CStr) -> io::Result<OwnedFd> {
    fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
}

impl Payload {
    /// Opens and validates the running executable's image: /proc/self/exe,
    /// or where /proc is not mounted (a bare chroot) the path the kernel ran
    /// (`AT_EXECFN`, which Linux has passed since 2.6.26; argv[0] is the
    /// same path or a bare name searched in PATH, so it is not tried).
    pub fn open_self() -> Result<Payload, PayloadError> {
        let file = match open_ro(c"/proc/self/exe") {
            Err(Errno::NOENT) => crate::sys::process::exec_path().map_or(Err(Errno::NOENT), open_ro),
            opened => opened,
        };
        Self::validate(file.map_err(PayloadError::Io)?)
    }

    /// Reads and validates the trailer of the image open as `file`.
    fn validate(file: OwnedFd) -> Result<Payload, PayloadError> {
        let len = u64::try_from(fs::fstat(&file).map_err(PayloadError::Io)?.st_size)
            .map_err(|_| PayloadError::Io(Errno::INVAL))?;
        let at = image::trailer_offset(len).map_err(PayloadError::Image)?;
        let mut trailer = [0u8; TRAILER_LEN];
        pread_exact(file.as_fd(), &mut trailer, at).map_err(PayloadError::Io)?;
        let image = Image::parse(&trailer, len).map_err(PayloadError::Image)?;
        Ok(Payload { file, image })
    }

    pub fn image(&self) -> &Image {
        &self.image
    }

    pub fn section(&self, kind: Kind) -> Option<Section> {
        self.image.section(kind)
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Reads `buf.len()` bytes at `offset` inside `section`.
    pub fn read(&self, section: &Section, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64).ok_or(Errno::INVAL)?;
        if end > section.len {
            return Err(Errno::INVAL);
        }
        pread_exact(self.fd(), buf, section.offset + offset)
    }

    /// Maps a whole section read-only (sections are page aligned), checked
    /// against its fast digest.
    pub fn map_checked(&self, section: &Section) -> Result<Mapped, PayloadError> {
        let m = Mapped::new(self.fd(), section.offset, section.len).map_err(PayloadError::Io)?;
        section.check_fast(m.bytes()).map_err(PayloadError::Image)?;
        Ok(m)
    }
}
