//! The reader half of a connection (the connection's own thread, after
//! the handshake): frames are read with `wire::frame`; a piece's payload
//! goes from the socket buffer straight into storage, every other body
//! through `wire::peer::decode_body` to the swarm state.

use std::io::{self, BufRead, BufReader, Read};
use std::net::TcpStream;

use super::connection::{drop_err, Swarm};
use crate::storage::{HashJob, HashPurpose, RecvError};
use crate::swarm::picker::PeerKey;
use crate::wire::frame::{self, FrameHead, PieceHead, Prefix};
use crate::wire::peer::decode_body;

const SOCKET_BUFFER: usize = 256 * 1024;

impl Swarm {
    pub(super) fn read_loop(&self, key: PeerKey, stream: &TcpStream) -> io::Result<()> {
        let mut r = BufReader::with_capacity(SOCKET_BUFFER, stream);
        let mut body = Vec::new();
        loop {
            let mut prefix = [0u8; frame::PREFIX_LEN];
            r.read_exact(&mut prefix)?;
            let len = match frame::decode_prefix(prefix, self.max_frame).map_err(protocol)? {
                Prefix::KeepAlive => continue,
                Prefix::Message(len) => len,
            };
            let mut msg_id = [0u8; 1];
            r.read_exact(&mut msg_id)?;
            let head = FrameHead::new(msg_id[0], len).map_err(protocol)?;
            if head.is_piece() {
                let mut fields = [0u8; frame::PIECE_FIELDS_LEN];
                r.read_exact(&mut fields)?;
                self.recv_piece(key, &mut r, PieceHead::of(&head, &fields))?;
            } else {
                body.resize(head.body_len(), 0);
                r.read_exact(&mut body)?;
                let msg = decode_body(head.id, &body).map_err(protocol)?;
                self.state.lock().on_message(key, msg).map_err(drop_err)?;
            }
        }
    }

    /// The data of a piece message whose header was read: throttled, then
    /// handed from the socket buffer straight to storage if the swarm state
    /// hands this thread the block, or read past otherwise.
    fn recv_piece(&self, key: PeerKey, r: &mut impl BufRead, piece: PieceHead) -> io::Result<()> {
        let PieceHead {
            index,
            begin,
            data_len,
        } = piece;
        // Throttling here, before the payload is read, lets TCP's own flow
        // control slow the sender down.
        if let Some(l) = &self.limits.download {
            if !l.acquire(data_len) {
                return Err(io::Error::other("shutting down"));
            }
        }
        let decision = self.state.lock().begin_block(key, index, begin, data_len);
        let Some((block, first_of_piece)) = decision.map_err(drop_err)? else {
            return skip(r, data_len);
        };
        if first_of_piece {
            let piece_len = self.state.lock().geometry().piece_len(index as usize);
            if let Err(e) = self.storage.prepare_piece(index as usize, piece_len) {
                // Our fault, not the peer's: keep it, drop the block, and
                // let the node stop.
                self.state.lock().abort_block(block);
                let _ = self.storage_failed_tx.try_send(e);
                return skip(r, data_len);
            }
        }
        // SAFETY: begin_block gave this thread the block.
        let written = unsafe { self.storage.recv_block(index as usize, begin, data_len, r) };
        match written {
            Ok(()) => {
                // Sent after the state lock is released: the pool's queue
                // is unbounded, but no lock is held across a channel.
                let ready = self.state.lock().finish_block(key, block);
                if let Some(p) = ready {
                    let _ = self.hash_jobs.send(HashJob {
                        piece: p.piece as usize,
                        purpose: HashPurpose::Download,
                    });
                }
            }
            Err(RecvError::Store(e)) => {
                // As for a piece that could not be prepared; the block's
                // bytes were read, so the stream is at the next frame.
                self.state.lock().abort_block(block);
                let _ = self.storage_failed_tx.try_send(e);
            }
            Err(RecvError::Read(e)) => {
                self.state.lock().abort_block(block);
                return Err(e);
            }
        }
        Ok(())
    }
}

/// A peer that broke the protocol: the connection ends with `e` as reason.
fn protocol(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// Reads past `len` bytes of data not kept.
fn skip(r: &mut impl Read, len: u32) -> io::Result<()> {
    io::copy(&mut r.by_ref().take(len as u64), &mut io::sink())?;
    Ok(())
}
