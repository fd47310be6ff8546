//! The writer half of a connection: pulls what to send from the swarm
//! state (`take_outgoing`) and sends control messages plus each uploaded
//! block's header and mapped bytes in one gathered write; a keep-alive when
//! nothing was sent for [`KEEPALIVE_INTERVAL`].

use std::io::{self, IoSlice, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::connection::{drop_err, Swarm};
use crate::swarm::picker::PeerKey;
use crate::swarm::torrent::DropReason;
use crate::wire::peer::{self, Message};

/// We send a keep-alive after this long without sending anything.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
/// Blocks a writer sends per pull from the state.
const UPLOAD_BATCH: usize = 32;

impl Swarm {
    pub(super) fn write_loop(
        &self,
        key: PeerKey,
        stream: TcpStream,
        waker: Receiver<()>,
        stop: Receiver<()>,
    ) -> io::Result<()> {
        let mut control = Vec::with_capacity(1024);
        let mut uploaded = 0u64;
        let mut last_sent = Instant::now();
        let result = (|| loop {
            let out = self.state.lock().take_outgoing(key, uploaded, UPLOAD_BATCH);
            uploaded = 0;
            match out.close {
                // The reader ended and unregistered: a normal close.
                Some(DropReason::Closed) => return Ok(()),
                Some(reason) => return Err(drop_err(reason)),
                None => {}
            }
            if !out.messages.is_empty() || !out.uploads.is_empty() {
                control.clear();
                for m in &out.messages {
                    m.encode(&mut control);
                }
                if let Some(l) = &self.limits.upload {
                    if !l.acquire(out.uploads.iter().map(|r| r.length).sum()) {
                        return Ok(());
                    }
                }
                let headers: Vec<[u8; peer::PIECE_HEADER_LEN]> = out
                    .uploads
                    .iter()
                    .map(|r| peer::piece_header(r.index, r.begin, r.length))
                    .collect();
                // One gathered write: control messages, then each block's
                // header and its bytes straight from the map (no copy).
                let mut slices = vec![IoSlice::new(&control)];
                for (r, h) in out.uploads.iter().zip(&headers) {
                    slices.push(IoSlice::new(h));
                    // SAFETY: only verified pieces are served; nothing writes them.
                    let block = unsafe {
                        self.storage
                            .block_slices(r.index as usize, r.begin, r.length)
                    };
                    slices.extend(block.into_iter().map(IoSlice::new));
                    uploaded += r.length as u64;
                }
                write_all_vectored(&stream, &mut slices)?;
                last_sent = Instant::now();
                continue;
            }
            let idle = KEEPALIVE_INTERVAL.saturating_sub(last_sent.elapsed());
            crossbeam_channel::select! {
                recv(waker) -> _ => {}
                recv(stop) -> _ => return Ok(()),
                default(idle) => {
                    let mut ka = Vec::new();
                    Message::KeepAlive.encode(&mut ka);
                    (&stream).write_all(&ka)?;
                    last_sent = Instant::now();
                }
            }
        })();
        let _ = stream.shutdown(Shutdown::Both);
        result
    }
}

/// `write_all` for a gather list (std's is unstable).
fn write_all_vectored(mut stream: &TcpStream, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match stream.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
