//! 9P2000.L wire format: a bounded little-endian decoder over the request and
//! an encoder into a caller-provided response buffer. Neither allocates; every
//! length the guest sends is checked against the bytes actually present.

use rustix::io::Errno;

/// Bytes of `size[4] type[1] tag[2]` in front of every message.
pub const HEADER: usize = 7;
/// Header of Rread/Twrite before the data: header + count[4] (+ fid, offset in T).
pub const IO_HEADER: u32 = 24;
/// Bytes of Twrite before its data: header, fid[4], offset[8], count[4].
pub const TWRITE_HEAD: usize = 23;
/// Bytes of Rwrite (and of Rlerror): header + count[4] (errno[4]).
pub const RWRITE_LEN: usize = 11;
/// The largest msize we agree to: what smol-init asks for, so a 128 KiB
/// read or write (cp, cat) takes one round trip, not 128 KiB - 24 and then
/// 24 bytes. The device's two bounce buffers of it are touched only as far
/// as messages reach: Twrite data never enters them (`device.rs`).
pub const MAX_MSIZE: u32 = 256 * 1024;
/// The smallest msize we agree to (QEMU's floor): a directory entry or a
/// PATH_MAX symlink target must fit in one message.
pub const MIN_MSIZE: u32 = 4096;
/// Most names in one Twalk (the protocol's MAXWELEM).
pub const MAX_WALK: usize = 16;
/// Tag of Tversion; also used to answer a message whose tag is unreadable.
pub const NOTAG: u16 = 0xffff;
/// "No fid" in Tattach's afid.
pub const NOFID: u32 = 0xffff_ffff;

/// Message types (T = request; the reply R is T + 1).
pub mod msg {
    pub const RLERROR: u8 = 7;
    pub const TSTATFS: u8 = 8;
    pub const TLOPEN: u8 = 12;
    pub const TLCREATE: u8 = 14;
    pub const TSYMLINK: u8 = 16;
    pub const TMKNOD: u8 = 18;
    pub const TRENAME: u8 = 20;
    pub const TREADLINK: u8 = 22;
    pub const TGETATTR: u8 = 24;
    pub const TSETATTR: u8 = 26;
    pub const TXATTRWALK: u8 = 30;
    pub const TXATTRCREATE: u8 = 32;
    pub const TREADDIR: u8 = 40;
    pub const TFSYNC: u8 = 50;
    pub const TLOCK: u8 = 52;
    pub const TGETLOCK: u8 = 54;
    pub const TLINK: u8 = 70;
    pub const TMKDIR: u8 = 72;
    pub const TRENAMEAT: u8 = 74;
    pub const TUNLINKAT: u8 = 76;
    pub const TVERSION: u8 = 100;
    pub const TAUTH: u8 = 102;
    pub const TATTACH: u8 = 104;
    pub const TFLUSH: u8 = 108;
    pub const TWALK: u8 = 110;
    pub const TREAD: u8 = 116;
    pub const TWRITE: u8 = 118;
    pub const TCLUNK: u8 = 120;
    pub const TREMOVE: u8 = 122;
}

/// A qid: the server's identity of a file (type, version, unique path).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Qid {
    pub kind: u8,
    pub version: u32,
    pub path: u64,
}

pub const QID_LEN: usize = 13;
pub const QTDIR: u8 = 0x80;
pub const QTSYMLINK: u8 = 0x02;
pub const QTFILE: u8 = 0x00;

/// A parsed message header; `body` is what follows the tag.
pub struct Header<'a> {
    pub kind: u8,
    pub tag: u16,
    pub body: &'a [u8],
}

/// Checks the header: `7 <= size <= min(msize, request.len())`. Bytes after
/// `size` (a longer descriptor chain) are ignored.
pub fn header(request: &[u8], msize: u32) -> Result<Header<'_>, Errno> {
    let mut r = Reader::new(request);
    let size = r.u32()?;
    let kind = r.u8()?;
    let tag = r.u16()?;
    if size > msize {
        return Err(Errno::MSGSIZE);
    }
    let size = usize::try_from(size).map_err(|_| Errno::MSGSIZE)?;
    let body = request.get(HEADER..size).ok_or(Errno::PROTO)?;
    Ok(Header { kind, tag, body })
}

/// A Twrite taken apart from its first [`TWRITE_HEAD`] bytes, so its data
/// can go from guest RAM to the file without a copy (`device.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteOp {
    pub tag: u16,
    pub fid: u32,
    pub offset: u64,
    pub count: u32,
}

impl WriteOp {
    /// `head`: a request's first bytes; `len`: its bytes in all. `Some` only
    /// for a Twrite that [`header`] and `Server::write` accept up to the fid
    /// lookup: `size <= msize`, `size <= len`, the `count` data bytes inside
    /// `size`. Anything else, errors included, takes the copying path.
    pub fn parse(head: &[u8; TWRITE_HEAD], len: u64, msize: u32) -> Option<Self> {
        let mut r = Reader::new(head);
        let (size, kind, tag) = (r.u32().ok()?, r.u8().ok()?, r.u16().ok()?);
        let (fid, offset, count) = (r.u32().ok()?, r.u64().ok()?, r.u32().ok()?);
        let ok = kind == msg::TWRITE
            && size <= msize
            && u64::from(size) <= len
            && TWRITE_HEAD as u64 + u64::from(count) <= u64::from(size);
        ok.then_some(Self { tag, fid, offset, count })
    }

    /// Rwrite(`n`) or Rlerror for the outcome of the write.
    pub fn reply(&self, result: Result<u32, Errno>) -> [u8; RWRITE_LEN] {
        let (kind, v) = match result {
            Ok(n) => (msg::TWRITE + 1, n),
            Err(e) => (msg::RLERROR, e.raw_os_error().unsigned_abs()),
        };
        let [t0, t1] = self.tag.to_le_bytes();
        let [v0, v1, v2, v3] = v.to_le_bytes();
        [RWRITE_LEN.to_le_bytes()[0], 0, 0, 0, kind, t0, t1, v0, v1, v2, v3]
    }
}

/// Reads fields front to back; running past the end is `EPROTO`.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Errno> {
        let (head, tail) = self.buf.split_at_checked(n).ok_or(Errno::PROTO)?;
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Errno> {
        let mut out = [0; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, Errno> {
        Ok(self.array::<1>()?[0])
    }
    pub fn u16(&mut self) -> Result<u16, Errno> {
        self.array().map(u16::from_le_bytes)
    }
    pub fn u32(&mut self) -> Result<u32, Errno> {
        self.array().map(u32::from_le_bytes)
    }
    pub fn u64(&mut self) -> Result<u64, Errno> {
        self.array().map(u64::from_le_bytes)
    }

    /// A string: `len[2]` then `len` bytes (not NUL-terminated on the wire).
    pub fn str(&mut self) -> Result<&'a [u8], Errno> {
        let len = self.u16()?;
        self.bytes(usize::from(len))
    }

    /// Bytes left unread.
    pub fn rest(&self) -> usize {
        self.buf.len()
    }
}

/// Writes a reply into a fixed buffer; overflowing it is `EMSGSIZE` (the
/// handler then answers Rlerror instead, which always fits).
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// Starts reply `kind` to `tag`; the size is filled in by [`Self::finish`].
    pub fn reply(buf: &'a mut [u8], kind: u8, tag: u16) -> Result<Self, Errno> {
        let mut w = Self { buf, pos: 0 };
        w.u32(0)?;
        w.u8(kind)?;
        w.u16(tag)?;
        Ok(w)
    }

    /// Room left for the reply.
    pub fn space(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Hands out the next `n` bytes to be filled in place (read data).
    pub fn reserve(&mut self, n: usize) -> Result<&mut [u8], Errno> {
        let end = self.pos.checked_add(n).ok_or(Errno::MSGSIZE)?;
        let out = self.buf.get_mut(self.pos..end).ok_or(Errno::MSGSIZE)?;
        self.pos = end;
        Ok(out)
    }

    /// Gives back the tail of a [`Self::reserve`] that was not filled.
    pub fn unreserve(&mut self, n: usize) {
        self.pos -= n.min(self.pos - HEADER);
    }

    /// Current position, to patch a count written before its data.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Overwrites bytes written earlier at `at` (a count before its data).
    pub fn patch(&mut self, at: usize, bytes: &[u8]) {
        if let Some(b) = self.buf.get_mut(at..at.saturating_add(bytes.len())) {
            b.copy_from_slice(bytes);
        }
    }

    pub fn put(&mut self, bytes: &[u8]) -> Result<(), Errno> {
        self.reserve(bytes.len())?.copy_from_slice(bytes);
        Ok(())
    }
    pub fn u8(&mut self, v: u8) -> Result<(), Errno> {
        self.put(&[v])
    }
    pub fn u16(&mut self, v: u16) -> Result<(), Errno> {
        self.put(&v.to_le_bytes())
    }
    pub fn u32(&mut self, v: u32) -> Result<(), Errno> {
        self.put(&v.to_le_bytes())
    }
    pub fn u64(&mut self, v: u64) -> Result<(), Errno> {
        self.put(&v.to_le_bytes())
    }
    pub fn str(&mut self, s: &[u8]) -> Result<(), Errno> {
        self.u16(u16::try_from(s.len()).map_err(|_| Errno::NAMETOOLONG)?)?;
        self.put(s)
    }
    pub fn qid(&mut self, q: Qid) -> Result<(), Errno> {
        self.u8(q.kind)?;
        self.u32(q.version)?;
        self.u64(q.path)
    }

    /// Writes the size field and returns the reply's length.
    pub fn finish(self) -> usize {
        let len = self.pos;
        let size = u32::try_from(len).unwrap_or(u32::MAX);
        // Always there: `reply` wrote the header.
        if let Some(b) = self.buf.first_chunk_mut::<4>() {
            *b = size.to_le_bytes();
        }
        len
    }
}

/// Writes `Rlerror(errno)` for `tag`; 0 if `buf` cannot hold even that.
pub fn lerror(buf: &mut [u8], tag: u16, errno: Errno) -> usize {
    let code = u32::try_from(errno.raw_os_error()).unwrap_or(5); // EIO
    let Ok(mut w) = Writer::reply(buf, msg::RLERROR, tag) else { return 0 };
    match w.u32(code) {
        Ok(()) => w.finish(),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_bounds() {
        let mut m = [0u8; 16];
        m[..4].copy_from_slice(&9u32.to_le_bytes());
        m[4] = msg::TCLUNK;
        assert_eq!(header(&m[..6], 8192).err(), Some(Errno::PROTO)); // < 7 bytes
        let h = header(&m, 8192).expect("valid");
        assert_eq!((h.kind, h.body.len()), (msg::TCLUNK, 2));
        m[..4].copy_from_slice(&3u32.to_le_bytes()); // size < 7
        assert_eq!(header(&m, 8192).err(), Some(Errno::PROTO));
        m[..4].copy_from_slice(&17u32.to_le_bytes()); // past the buffer
        assert_eq!(header(&m, 8192).err(), Some(Errno::PROTO));
        m[..4].copy_from_slice(&9000u32.to_le_bytes()); // above msize
        assert_eq!(header(&m, 8192).err(), Some(Errno::MSGSIZE));
        m[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(header(&m, u32::MAX).err(), Some(Errno::PROTO));
    }

    #[test]
    fn write_op_only_for_well_formed_twrites() {
        let m = |size: u32, kind: u8, count: u32| {
            let mut b = size.to_le_bytes().to_vec();
            b.push(kind);
            b.extend_from_slice(&[9, 0, 5, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
            b.extend_from_slice(&count.to_le_bytes());
            b
        };
        let h = |size: u32, kind: u8, count: u32| -> [u8; TWRITE_HEAD] { m(size, kind, count).try_into().expect("23 bytes") };
        let op = WriteOp { tag: 9, fid: 5, offset: 1, count: 10 };
        assert_eq!(WriteOp::parse(&h(33, msg::TWRITE, 10), 33, 8192), Some(op));
        assert_eq!(WriteOp::parse(&h(40, msg::TWRITE, 10), 50, 8192), Some(op), "bytes past count are ignored");
        assert_eq!(WriteOp::parse(&h(33, msg::TWRITE, 11), 40, 8192), None, "count past size");
        assert_eq!(WriteOp::parse(&h(33, msg::TWRITE, 10), 32, 8192), None, "size past the chain");
        assert_eq!(WriteOp::parse(&h(33, msg::TWRITE, 10), 33, 32), None, "size past msize");
        assert_eq!(WriteOp::parse(&h(23, msg::TWRITE, u32::MAX), u64::MAX, u32::MAX), None);
        assert_eq!(WriteOp::parse(&h(33, msg::TREAD, 10), 33, 8192), None);
        assert_eq!(op.reply(Ok(7)), [11, 0, 0, 0, msg::TWRITE + 1, 9, 0, 7, 0, 0, 0]);
        assert_eq!(op.reply(Err(Errno::ROFS)), [11, 0, 0, 0, msg::RLERROR, 9, 0, 30, 0, 0, 0]);
    }

    #[test]
    fn string_past_end_is_refused() {
        let mut r = Reader::new(&[5, 0, b'a', b'b']);
        assert_eq!(r.str().err(), Some(Errno::PROTO));
        let mut r = Reader::new(&[0xff, 0xff]);
        assert_eq!(r.str().err(), Some(Errno::PROTO));
        let mut r = Reader::new(&[2, 0, b'a', b'b', 1]);
        assert_eq!(r.str(), Ok(&b"ab"[..]));
        assert_eq!(r.rest(), 1);
        assert_eq!(r.u16().err(), Some(Errno::PROTO));
    }

    #[test]
    fn writer_never_overflows() {
        let mut buf = [0u8; 11];
        let mut w = Writer::reply(&mut buf, 101, 3).expect("fits");
        assert!(w.u32(1).is_ok());
        assert_eq!(w.u8(1).err(), Some(Errno::MSGSIZE));
        assert_eq!(w.finish(), 11);
        assert_eq!(lerror(&mut buf, 3, Errno::NOENT), 11);
        assert_eq!(&buf[..11], &[11, 0, 0, 0, 7, 3, 0, 2, 0, 0, 0]);
        assert_eq!(lerror(&mut buf[..10], 3, Errno::NOENT), 0);
    }
}
