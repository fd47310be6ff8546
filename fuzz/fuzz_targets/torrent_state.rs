//! `TorrentState` driven as a hostile peer's connection would drive it:
//! a stream of decoded frames from one registered peer, blocks written
//! through `begin_block`/`finish_block`, outgoing pulled after each frame,
//! ready pieces answered (every other piece failing), and the clock ticking.
//! Only the public API a connection thread uses, so it survives refactors.
#![no_main]
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use btnode::core::{PeerId, PieceGeometry};
use btnode::swarm::torrent::{HashVerdict, TorrentState};
use btnode::wire::peer::{decode_frame, max_frame_len, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let num_pieces = data[0] as usize % 16 + 1;
    let piece_length = 16384 * (data[1] as u64 % 4 + 1);
    let tail = 1 + (data[2] as u64 * 997) % piece_length;
    let total_length = (num_pieces as u64 - 1) * piece_length + tail;
    let layout = PieceGeometry::new(total_length, piece_length).expect("geometry");
    let mut st = TorrentState::new(layout, PeerId([1; 20]), 4, 7);
    // Some metadata to serve (BEP 9): two pieces, the last one short.
    st.metadata = Some(vec![b'x'; 20_000].into());
    let mut ready = Vec::new();
    let addr: SocketAddr = "127.0.0.2:6881".parse().expect("address");
    let key = st.register(addr, PeerId([2; 20]), true, data[3] & 1 == 1, || {});
    let max = max_frame_len(num_pieces);
    let start = Instant::now();
    let mut buf = &data[4..];
    let mut round = 0u64;
    while let Ok(Some((msg, used))) = decode_frame(buf, max) {
        buf = &buf[used..];
        let result = match msg {
            Message::Piece { index, begin, data } => {
                match st.begin_block(key, index, begin, data.len() as u32) {
                    Ok(Some((block, _first))) => {
                        // A zero first byte stands for a failed disk write.
                        if data.first() == Some(&0) {
                            st.abort_block(block);
                        } else {
                            ready.extend(st.finish_block(key, block));
                        }
                        Ok(())
                    }
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            other => st.on_message(key, other),
        };
        let out = st.take_outgoing(key, 0, 8);
        if result.is_err() || out.close.is_some() {
            break;
        }
        for p in ready.drain(..) {
            let _ = st.on_hash_result(HashVerdict {
                piece: p.piece,
                ok: p.piece % 2 == 0,
            });
        }
        round += 1;
        st.tick(start + Duration::from_secs(round * 7));
        let _ = st.peer_summaries();
    }
    st.unregister(key);
    assert_eq!(st.num_peers(), 0);
});
