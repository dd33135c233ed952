//! The host end of the network: one fd that carries Ethernet frames, in
//! one of two framings, with bounded buffers both ways.
//!
//! - [`Framing::Stream`] (passt's `--fd` protocol over a stream socket):
//!   each frame preceded by its length as a 4-byte big-endian integer.
//!   Reads and writes may stop anywhere; the buffers carry the rest over.
//! - [`Framing::Tap`] (a TAP fd with `IFF_VNET_HDR`): one frame per read or
//!   write, preceded by a [`VNET_HDR_LEN`]-byte virtio-net header.
//!
//! Frames here never include the virtio-net header: the device writes and
//! strips that itself. At most one outgoing frame waits in the link (the
//! device takes no TX chain until it is written) and incoming bytes are
//! read only when the device asks for a frame, which it does only when the
//! guest has a buffer: a slow side stops the other without growing memory.

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::{self, Errno};

/// `struct virtio_net_hdr_v1` (with `num_buffers`): the header of every
/// frame between driver and device once VERSION_1 is negotiated.
pub const VNET_HDR_LEN: usize = 12;
/// Ethernet header: the shortest frame either side accepts.
pub const ETH_HLEN: usize = 14;
/// The MTU offered with passt (its own default: the largest 802.3 frame
/// minus headers, rounded to 32-bit words).
pub const PASST_MTU: u16 = 65520;
/// Largest frame (Ethernet header + payload) a link carries: the largest
/// MTU the device offers plus the Ethernet header and one VLAN tag.
pub const MAX_FRAME: usize = PASST_MTU as usize + ETH_HLEN + 4;
/// Stream length prefix.
const LEN_PREFIX: usize = 4;
/// Room in front of an outgoing frame for its prefix (either framing).
const TX_HEAD: usize = VNET_HDR_LEN;
/// Incoming stream bytes: a whole largest frame plus one more, so one
/// read can bring in many small frames.
const RX_CAP: usize = 2 * (LEN_PREFIX + MAX_FRAME);

/// How frames are delimited on the fd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Stream,
    Tap,
}

/// Why a link stopped carrying frames (it stays down).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkError {
    /// The other end closed (passt exited).
    Closed,
    /// The stream announced a frame shorter than an Ethernet header or
    /// longer than [`MAX_FRAME`]: it cannot be resynchronised.
    BadLength(u32),
    /// A read or write failed.
    Io(Errno),
}

/// A link's two buffers (~200 KiB: keep them in static storage, see
/// `sys::once`, whose pages cost nothing until used).
pub struct Buffers {
    tx: [u8; TX_HEAD + MAX_FRAME],
    rx: [u8; RX_CAP],
}

impl Default for Buffers {
    fn default() -> Self {
        Self::new()
    }
}

impl Buffers {
    pub const fn new() -> Self {
        Buffers { tx: [0; TX_HEAD + MAX_FRAME], rx: [0; RX_CAP] }
    }
}

/// A frame-carrying fd with its buffers.
pub struct Link<'b> {
    fd: OwnedFd,
    framing: Framing,
    /// Outgoing: `tx[TX_HEAD..TX_HEAD + len]` is the frame, the prefix sits
    /// right before it; `tx_pos..tx_end` is what is still to be written.
    tx: &'b mut [u8; TX_HEAD + MAX_FRAME],
    tx_pos: usize,
    tx_end: usize,
    /// Incoming: `rx[rx_pos..rx_end]` holds bytes read but not delivered.
    rx: &'b mut [u8; RX_CAP],
    rx_pos: usize,
    rx_end: usize,
    /// Length of the frame at `rx_pos` (after its prefix, if any) once
    /// complete and handed out by [`Link::rx_frame`].
    rx_ready: Option<(usize, usize)>,
}

impl<'b> Link<'b> {
    /// `fd` must be non-blocking.
    pub fn new(fd: OwnedFd, framing: Framing, buffers: &'b mut Buffers) -> Self {
        let Buffers { tx, rx } = buffers;
        Link { fd, framing, tx, tx_pos: 0, tx_end: 0, rx, rx_pos: 0, rx_end: 0, rx_ready: None }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Whether an outgoing frame is still (partly) unwritten.
    pub fn tx_pending(&self) -> bool {
        self.tx_pos < self.tx_end
    }

    /// Room for the next outgoing frame ([`MAX_FRAME`] bytes), or `None`
    /// while the previous one is still being written.
    pub fn tx_slot(&mut self) -> Option<&mut [u8]> {
        if self.tx_pending() {
            return None;
        }
        self.tx.get_mut(TX_HEAD..)
    }

    /// Sends the `len` bytes just put in [`Link::tx_slot`] (as much as the
    /// fd takes now; [`Link::tx_flush`] writes the rest later).
    pub fn tx_commit(&mut self, len: usize) -> Result<(), LinkError> {
        if self.tx_pending() || !(ETH_HLEN..=MAX_FRAME).contains(&len) {
            return Err(LinkError::BadLength(u32::try_from(len).unwrap_or(u32::MAX)));
        }
        let start = match self.framing {
            Framing::Stream => TX_HEAD - LEN_PREFIX,
            Framing::Tap => 0,
        };
        // len <= MAX_FRAME (checked), so it fits u32 and the prefix fits TX_HEAD.
        let head = self.tx.get_mut(start..TX_HEAD).unwrap_or_default();
        match self.framing {
            Framing::Stream => {
                let len = u32::try_from(len).unwrap_or(u32::MAX); // <= MAX_FRAME (checked)
                for (d, s) in head.iter_mut().zip(len.to_be_bytes()) {
                    *d = s;
                }
            }
            // No offloads were negotiated: an all-zero header (GSO_NONE, no
            // checksum to finish).
            Framing::Tap => head.fill(0),
        }
        self.tx_pos = start;
        self.tx_end = TX_HEAD + len;
        self.tx_flush().map(|_| ())
    }

    /// Writes what is left of the pending frame. `Ok(true)`: nothing is
    /// pending any more; `Ok(false)`: the fd is full, try again when it is
    /// writable.
    pub fn tx_flush(&mut self) -> Result<bool, LinkError> {
        while self.tx_pending() {
            let rest = self.tx.get(self.tx_pos..self.tx_end).unwrap_or_default();
            match io::write(&self.fd, rest) {
                Ok(0) => return Err(LinkError::Closed),
                Ok(n) => self.tx_pos = self.tx_pos.saturating_add(n).min(self.tx_end),
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return Ok(false),
                Err(Errno::PIPE | Errno::CONNRESET) => {
                    self.tx_pos = self.tx_end;
                    return Err(LinkError::Closed);
                }
                Err(e) => {
                    // A TAP refuses single frames (e.g. the interface is
                    // down: EIO): drop that frame, the link stays up.
                    self.tx_pos = self.tx_end;
                    if self.framing == Framing::Tap {
                        return Ok(true);
                    }
                    return Err(LinkError::Io(e));
                }
            }
        }
        Ok(true)
    }

    /// The next complete incoming frame, reading the fd only when no whole
    /// frame is buffered. `Ok(None)`: nothing now (wait for readability).
    /// The frame stays until [`Link::rx_consume`].
    pub fn rx_frame(&mut self) -> Result<Option<&[u8]>, LinkError> {
        if self.rx_ready.is_none() {
            self.rx_ready = match self.framing {
                Framing::Stream => self.stream_frame()?,
                Framing::Tap => self.tap_frame()?,
            };
        }
        Ok(self.rx_ready.and_then(|(at, len)| self.rx.get(at..at.checked_add(len)?)))
    }

    /// Forgets the frame [`Link::rx_frame`] returned (delivered or dropped).
    pub fn rx_consume(&mut self) {
        if let Some((at, len)) = self.rx_ready.take() {
            self.rx_pos = at.saturating_add(len).min(self.rx_end);
        }
    }

    /// A whole stream frame at `rx_pos` (read more if needed): `(at, len)`.
    fn stream_frame(&mut self) -> Result<Option<(usize, usize)>, LinkError> {
        loop {
            let buffered = self.rx.get(self.rx_pos..self.rx_end).unwrap_or_default();
            let need = match buffered.first_chunk::<LEN_PREFIX>() {
                Some(p) => {
                    let len = u32::from_be_bytes(*p);
                    let n = usize::try_from(len).unwrap_or(usize::MAX);
                    if !(ETH_HLEN..=MAX_FRAME).contains(&n) {
                        return Err(LinkError::BadLength(len));
                    }
                    if buffered.len() >= LEN_PREFIX + n {
                        return Ok(Some((self.rx_pos + LEN_PREFIX, n)));
                    }
                    LEN_PREFIX + n
                }
                None => LEN_PREFIX,
            };
            // Not enough room after rx_pos for the whole frame: move the
            // partial frame to the front (need <= RX_CAP / 2).
            if self.rx_pos.saturating_add(need) > RX_CAP {
                self.rx.copy_within(self.rx_pos..self.rx_end, 0);
                self.rx_end -= self.rx_pos;
                self.rx_pos = 0;
            }
            if self.rx_pos == self.rx_end {
                self.rx_pos = 0;
                self.rx_end = 0;
            }
            let room = self.rx.get_mut(self.rx_end..).unwrap_or_default();
            match io::read(&self.fd, room) {
                Ok(0) => return Err(LinkError::Closed),
                Ok(n) => self.rx_end = self.rx_end.saturating_add(n).min(RX_CAP),
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return Ok(None),
                Err(Errno::CONNRESET) => return Err(LinkError::Closed),
                Err(e) => return Err(LinkError::Io(e)),
            }
        }
    }

    /// One TAP read: a virtio-net header and a frame. Runts are skipped.
    fn tap_frame(&mut self) -> Result<Option<(usize, usize)>, LinkError> {
        loop {
            let room = self.rx.get_mut(..VNET_HDR_LEN + MAX_FRAME).unwrap_or_default();
            match io::read(&self.fd, room) {
                Ok(0) => return Err(LinkError::Closed),
                Ok(n) if n >= VNET_HDR_LEN + ETH_HLEN => {
                    self.rx_pos = 0;
                    self.rx_end = n;
                    return Ok(Some((VNET_HDR_LEN, n - VNET_HDR_LEN)));
                }
                Ok(_) => {} // shorter than a header and an Ethernet header
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return Ok(None),
                Err(e) => return Err(LinkError::Io(e)),
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// A link with leaked heap buffers (tests only).
    pub(crate) fn boxed(fd: OwnedFd, framing: Framing) -> Link<'static> {
        Link::new(fd, framing, Box::leak(Box::new(Buffers::new())))
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::boxed;
    use super::*;
    use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};

    fn pair() -> (Link<'static>, OwnedFd) {
        let (a, b) = socketpair(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC, None)
            .expect("socketpair");
        (boxed(a, Framing::Stream), b)
    }

    fn frame(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    #[test]
    fn stream_frames_out_are_length_prefixed() {
        let (mut l, peer) = pair();
        let f = frame(60, 1);
        l.tx_slot().expect("room")[..60].copy_from_slice(&f);
        l.tx_commit(60).expect("sent");
        let mut buf = [0u8; 128];
        let n = io::read(&peer, &mut buf).expect("read");
        assert_eq!(&buf[..4], &60u32.to_be_bytes());
        assert_eq!(&buf[4..n], &f[..]);
        assert!(l.tx_commit(5).is_err(), "runt refused");
        assert!(l.tx_commit(MAX_FRAME + 1).is_err(), "oversize refused");
    }

    #[test]
    fn stream_frames_in_survive_any_split() {
        let (mut l, peer) = pair();
        let frames = [frame(14, 2), frame(1500, 3), frame(MAX_FRAME, 4), frame(100, 5)];
        let mut wire = Vec::new();
        for f in &frames {
            wire.extend_from_slice(&(f.len() as u32).to_be_bytes());
            wire.extend_from_slice(f);
        }
        let mut got = Vec::new();
        // Feed in odd-sized pieces, taking frames as they complete.
        for piece in wire.chunks(7919) {
            crate::hostio::write_all(peer.as_fd(), crate::sys::io::IoBuf::from(piece)).expect("write");
            while let Some(f) = l.rx_frame().expect("ok") {
                got.push(f.to_vec());
                l.rx_consume();
            }
        }
        assert_eq!(got, frames);
        assert_eq!(l.rx_frame(), Ok(None));
        drop(peer);
        assert_eq!(l.rx_frame(), Err(LinkError::Closed));
    }

    #[test]
    fn a_frame_is_held_until_consumed() {
        let (mut l, peer) = pair();
        let mut wire = (20u32).to_be_bytes().to_vec();
        wire.extend(frame(20, 9));
        crate::hostio::write_all(peer.as_fd(), crate::sys::io::IoBuf::from(&wire[..])).expect("write");
        let a = l.rx_frame().expect("ok").expect("frame").to_vec();
        let b = l.rx_frame().expect("ok").expect("same frame").to_vec();
        assert_eq!(a, b);
        l.rx_consume();
        assert_eq!(l.rx_frame(), Ok(None));
    }

    #[test]
    fn bad_stream_lengths_break_the_link() {
        for len in [0u32, 13, MAX_FRAME as u32 + 1, u32::MAX] {
            let (mut l, peer) = pair();
            crate::hostio::write_all(peer.as_fd(), crate::sys::io::IoBuf::from(&len.to_be_bytes()[..])).expect("write");
            assert_eq!(l.rx_frame(), Err(LinkError::BadLength(len)));
        }
    }

    #[test]
    fn a_full_socket_keeps_the_frame_pending_then_flushes() {
        let (mut l, peer) = pair();
        let f = frame(MAX_FRAME, 7);
        let mut sent = 0usize;
        // Fill the socket until a frame stays pending.
        while !l.tx_pending() {
            l.tx_slot().expect("room")[..MAX_FRAME].copy_from_slice(&f);
            l.tx_commit(MAX_FRAME).expect("ok");
            sent += 1;
            assert!(sent < 1000, "socket never filled");
        }
        assert!(l.tx_slot().is_none(), "no new frame while one is pending");
        assert_eq!(l.tx_flush(), Ok(false));
        // Drain everything on the other side; the pending frame completes.
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0usize;
        loop {
            match io::read(&peer, &mut buf) {
                Ok(n) => total += n,
                Err(Errno::AGAIN) => {
                    if l.tx_flush().expect("ok") && !l.tx_pending() {
                        // One last drain after the final flush.
                        while let Ok(n) = io::read(&peer, &mut buf) {
                            total += n;
                        }
                        break;
                    }
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(total, sent * (4 + MAX_FRAME));
    }

    #[test]
    fn tap_framing_adds_and_strips_the_vnet_header() {
        // A datagram socketpair behaves like a TAP fd: one frame per call.
        let (a, b) = socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::NONBLOCK, None).expect("pair");
        let mut l = boxed(a, Framing::Tap);
        let f = frame(64, 3);
        l.tx_slot().expect("room")[..64].copy_from_slice(&f);
        l.tx_commit(64).expect("sent");
        let mut buf = [0u8; 256];
        let n = io::read(&b, &mut buf).expect("read");
        assert_eq!(n, VNET_HDR_LEN + 64);
        assert_eq!(&buf[..VNET_HDR_LEN], &[0; VNET_HDR_LEN]);
        assert_eq!(&buf[VNET_HDR_LEN..n], &f[..]);
        // In: a runt is skipped, then a frame comes through headerless.
        io::write(&b, &[0u8; 20]).expect("runt");
        let mut pkt = vec![0u8; VNET_HDR_LEN];
        pkt.extend(frame(42, 8));
        io::write(&b, &pkt).expect("frame");
        assert_eq!(l.rx_frame().expect("ok"), Some(&frame(42, 8)[..]));
    }
}
