//! The extension protocol's bookkeeping (BEP 10 handshake, BEP 11 peer
//! exchange, BEP 9 metadata): what our handshake offers, what a peer's told
//! us (its request limit, client, listening port, `ut_pex` and
//! `ut_metadata` ids), which addresses each peer was told are connected,
//! the addresses peers told us about, drained by the node into its
//! candidates, and the info dictionary served in pieces to peers that came
//! with a magnet link. Messages arrive and leave typed (see `wire::peer`);
//! nothing here encodes or decodes.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{DropReason, TorrentState, OUR_REQQ};
use crate::swarm::picker::PeerKey;
use crate::wire::metadata::{self, MetadataMessage, METADATA_PIECE_LEN};
use crate::wire::peer::{ExtendedHandshake, Message};
use crate::wire::pex;

/// How often each peer gets a peer exchange message (BEP 11: once a minute).
pub const PEX_INTERVAL: Duration = Duration::from_secs(60);
/// A peer's exchange messages closer together than this are ignored.
pub const PEX_MIN_GAP: Duration = Duration::from_secs(45);
/// Most learned addresses held for the node between two of its ticks.
const MAX_PEX_LEARNED: usize = 500;
/// Metadata pieces one peer is sent per second (512 KiB/s); requests past
/// it are rejected, so asking in a loop cannot make us send unbounded data.
/// A whole real info dictionary (tens to hundreds of KiB) fits in one second.
pub const METADATA_PIECES_PER_SEC: u32 = 32;
const METADATA_WINDOW: Duration = Duration::from_secs(1);

impl TorrentState {
    /// Addresses learned through peer exchange since the last call.
    pub fn take_pex_learned(&mut self) -> Vec<SocketAddr> {
        std::mem::take(&mut self.pex_learned)
    }

    /// A peer's `ut_pex` message: new addresses for the node to try. A
    /// malformed one is ignored, and so is one that comes sooner than
    /// [`PEX_MIN_GAP`] after the last (BEP 11 asks for one a minute), so a
    /// peer cannot flood us with addresses.
    /// Our extension handshake, sent to every peer that speaks BEP 10.
    /// `to` is the peer's address, sent back as `yourip` (BEP 10).
    pub(super) fn our_handshake(&self, to: SocketAddr) -> ExtendedHandshake {
        ExtendedHandshake {
            reqq: Some(OUR_REQQ),
            client: Some(format!("btnode {}", env!("CARGO_PKG_VERSION"))),
            listen_port: Some(self.listen_port).filter(|&p| p != 0),
            ut_pex: self.pex_enabled.then_some(pex::OUR_UT_PEX_ID),
            ut_metadata: self.metadata.as_ref().map(|_| metadata::OUR_UT_METADATA_ID),
            metadata_size: self.metadata.as_ref().map(|m| m.len() as u64),
            yourip: Some(to.ip()),
            ipv6: None,
        }
    }

    /// A peer's extension handshake: its request limit, client name,
    /// listening port, and whether (and under which id) it wants peer
    /// exchange.
    pub(super) fn on_extended_handshake(
        &mut self,
        key: PeerKey,
        hs: ExtendedHandshake,
    ) -> Result<(), DropReason> {
        let pex_enabled = self.pex_enabled;
        let peer = self.peer_mut(key)?;
        if let Some(q) = hs.reqq {
            peer.reqq = q.max(1);
        }
        peer.client = hs.client;
        if let (false, Some(port)) = (peer.outgoing, hs.listen_port) {
            peer.listen_addr = Some(SocketAddr::new(peer.addr.ip(), port));
        }
        // BEP 10 `ipv6`: the peer's other address, worth dialing when it
        // listens (its `p`, else the port it is connected from, when we
        // dialed it) and is reached over IPv4 now.
        let v6 = hs.ipv6.filter(|ip| {
            !ip.is_unspecified() && !ip.is_multicast() && peer.addr.ip().to_canonical().is_ipv4()
        });
        let port = hs.listen_port.or(peer.outgoing.then_some(peer.addr.port()));
        let learned = v6.zip(port).map(|(ip, port)| SocketAddr::from((ip, port)));
        if pex_enabled && peer.ut_pex.is_none() && hs.ut_pex.is_some() {
            // The first message goes out at the next tick.
            peer.pex_due = Some(Instant::now());
        }
        peer.ut_pex = hs.ut_pex.filter(|_| pex_enabled);
        peer.ut_metadata = hs.ut_metadata;
        if let Some(a) = learned.filter(|_| self.pex_learned.len() < MAX_PEX_LEARNED) {
            self.pex_learned.push(a);
        }
        Ok(())
    }

    /// Any other extension message: peer exchange, or a raw one.
    pub(super) fn on_extension(&mut self, key: PeerKey, msg: Message) -> Result<(), DropReason> {
        match msg {
            Message::Pex { pex, .. } if self.pex_enabled => self.on_pex(key, Some(pex)),
            Message::Metadata { msg, .. } => self.on_metadata(key, msg, Instant::now()),
            // A `ut_pex` message that did not decode still counts as the
            // peer's exchange (see `on_pex`).
            Message::Extended { ext_id, .. }
                if ext_id == pex::OUR_UT_PEX_ID && self.pex_enabled =>
            {
                self.on_pex(key, None)
            }
            // Undecodable handshakes, extensions we do not speak, and peer
            // exchange on a private torrent are ignored.
            _ => Ok(()),
        }
    }

    /// A peer's `ut_metadata` message: a request is answered with the piece
    /// (under the peer's id), or a reject for a piece past the end, when we
    /// offer no metadata, or past the peer's budget. Data and rejects are
    /// not for us (we have the metadata) and are ignored.
    fn on_metadata(
        &mut self,
        key: PeerKey,
        msg: MetadataMessage,
        now: Instant,
    ) -> Result<(), DropReason> {
        let MetadataMessage::Request { piece } = msg else {
            return Ok(());
        };
        let info = self.metadata.clone();
        let peer = self.peer_mut(key)?;
        let Some(id) = peer.ut_metadata else {
            // It gave no id to answer under.
            return Ok(());
        };
        let (since, served) = &mut peer.metadata_served;
        if now.duration_since(*since) >= METADATA_WINDOW {
            *since = now;
            *served = 0;
        }
        let reply = match info {
            Some(info)
                if piece < metadata::piece_count(info.len() as u64)
                    && *served < METADATA_PIECES_PER_SEC =>
            {
                *served += 1;
                let start = piece as usize * METADATA_PIECE_LEN;
                let len = metadata::piece_len(info.len() as u64, piece);
                MetadataMessage::Data {
                    piece,
                    total_size: info.len() as u64,
                    data: info[start..start + len].to_vec(),
                }
            }
            _ => MetadataMessage::Reject { piece },
        };
        peer.send(Message::Metadata {
            ext_id: id,
            msg: reply,
        });
        Ok(())
    }

    fn on_pex(&mut self, key: PeerKey, msg: Option<pex::PexMessage>) -> Result<(), DropReason> {
        let now = Instant::now();
        let peer = self.peer_mut(key)?;
        if peer
            .pex_heard
            .is_some_and(|t| now.duration_since(t) < PEX_MIN_GAP)
        {
            return Ok(());
        }
        peer.pex_heard = Some(now);
        let Some(msg) = msg else {
            return Ok(());
        };
        let room = MAX_PEX_LEARNED.saturating_sub(self.pex_learned.len());
        self.pex_learned.extend(msg.added.into_iter().take(room));
        Ok(())
    }

    /// Sends each peer exchange peer that is due what changed in our
    /// connected set since its last message: connectable addresses only,
    /// never the peer's own, at most 50 added and 50 dropped.
    pub(super) fn send_pex(&mut self, now: Instant) {
        let connected: HashSet<SocketAddr> =
            self.peers.values().filter_map(|p| p.listen_addr).collect();
        for peer in self.peers.values_mut() {
            let (Some(id), Some(due)) = (peer.ut_pex, peer.pex_due) else {
                continue;
            };
            if due > now {
                continue;
            }
            peer.pex_due = Some(now + PEX_INTERVAL);
            let own = peer.listen_addr;
            let added: Vec<SocketAddr> = connected
                .iter()
                .filter(|a| Some(**a) != own && **a != peer.addr && !peer.pex_told.contains(a))
                .take(pex::SEND_PEX_PEERS)
                .copied()
                .collect();
            let dropped: Vec<SocketAddr> = peer
                .pex_told
                .iter()
                .filter(|a| !connected.contains(a))
                .take(pex::SEND_PEX_PEERS)
                .copied()
                .collect();
            if added.is_empty() && dropped.is_empty() {
                continue;
            }
            for a in &dropped {
                peer.pex_told.remove(a);
            }
            peer.pex_told.extend(added.iter().copied());
            peer.send(Message::Pex {
                ext_id: id,
                pex: pex::PexMessage { added, dropped },
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    use super::super::tests::{add_peer, state, waker};
    use super::*;
    use crate::core::{PeerId, BLOCK_SIZE};

    /// Registers a BEP 10 peer at `addr`, reads the ut_pex id our extension
    /// handshake offered it, and answers with its own handshake (ut_pex id
    /// 7, and `listen_port`).
    fn exchange_handshakes(
        s: &mut TorrentState,
        addr: SocketAddr,
        outgoing: bool,
        listen_port: Option<u16>,
    ) -> (PeerKey, Option<u8>, Arc<AtomicUsize>) {
        let (wtx, wrx) = waker();
        let key = s.register(addr, PeerId([3; 20]), true, outgoing, wtx);
        let ours = s.take_outgoing(key, 0, 0).messages;
        let Some(Message::ExtendedHandshake(hs)) = ours.first() else {
            panic!("no extension handshake: {ours:?}");
        };
        let offered = hs.ut_pex;
        let theirs = ExtendedHandshake {
            listen_port,
            ut_pex: Some(7),
            ..Default::default()
        };
        s.on_message(key, Message::ExtendedHandshake(theirs))
            .unwrap();
        (key, offered, wrx)
    }

    fn pex_messages(s: &mut TorrentState, key: PeerKey) -> Vec<pex::PexMessage> {
        s.take_outgoing(key, 0, 0)
            .messages
            .iter()
            .filter_map(|m| match m {
                Message::Pex { ext_id: 7, pex } => Some(pex.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn our_handshake_says_yourip_and_a_peers_ipv6_is_learned() {
        let mut s = state(4, BLOCK_SIZE as u64);
        let addr = SocketAddr::from(([127, 0, 0, 5], 40000));
        let (wtx, _wrx) = waker();
        let key = s.register(addr, PeerId([5; 20]), true, false, wtx);
        let ours = s.take_outgoing(key, 0, 0).messages;
        let Some(Message::ExtendedHandshake(hs)) = ours.first() else {
            panic!("no extension handshake: {ours:?}");
        };
        assert_eq!(hs.yourip, Some(addr.ip()));
        let theirs = ExtendedHandshake {
            listen_port: Some(6881),
            ipv6: Some("2001:db8::5".parse().unwrap()),
            ..Default::default()
        };
        s.on_message(key, Message::ExtendedHandshake(theirs))
            .unwrap();
        assert_eq!(
            s.take_pex_learned(),
            vec!["[2001:db8::5]:6881".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn peer_exchange_tells_connectable_peers_and_learns_bounded() {
        let mut s = state(4, BLOCK_SIZE as u64);
        let (a, _wa) = add_peer(&mut s, 1001);
        let (_b, _wb) = add_peer(&mut s, 1002);
        // An incoming peer: its address has an ephemeral port; its
        // handshake names its listening port and its ut_pex id.
        let ephemeral = SocketAddr::from(([127, 0, 0, 3], 55555));
        let (c, offered, _wc) = exchange_handshakes(&mut s, ephemeral, false, Some(1003));
        assert_eq!(offered, Some(pex::OUR_UT_PEX_ID));
        let now = Instant::now() + Duration::from_secs(1);
        s.tick(now);
        let sent = pex_messages(&mut s, c);
        assert_eq!(sent.len(), 1);
        let mut added = sent[0].added.clone();
        added.sort();
        let local = |port| SocketAddr::from(([127, 0, 0, 1], port));
        assert_eq!(
            added,
            vec![local(1001), local(1002)],
            "never the peer itself"
        );
        s.tick(now + Duration::from_secs(30));
        assert!(pex_messages(&mut s, c).is_empty(), "once a minute");
        s.unregister(a);
        s.tick(now + PEX_INTERVAL);
        let sent = pex_messages(&mut s, c);
        assert_eq!(sent[0].dropped, vec![local(1001)]);
        assert!(sent[0].added.is_empty());
        // C's own exchange: learned once; a second one at once is ignored.
        let theirs = pex::PexMessage {
            added: vec!["10.9.9.9:6881".parse().unwrap()],
            dropped: vec![],
        };
        let msg = Message::Pex {
            ext_id: pex::OUR_UT_PEX_ID,
            pex: theirs.clone(),
        };
        s.on_message(c, msg.clone()).unwrap();
        s.on_message(c, msg).unwrap();
        assert_eq!(s.take_pex_learned(), theirs.added);
        // Garbage is ignored, not a reason to drop the peer.
        let junk = Message::Extended {
            ext_id: pex::OUR_UT_PEX_ID,
            payload: b"garbage".to_vec(),
        };
        assert!(s.on_message(c, junk).is_ok());
    }

    fn metadata_replies(s: &mut TorrentState, key: PeerKey) -> Vec<MetadataMessage> {
        s.take_outgoing(key, 0, 0)
            .messages
            .into_iter()
            .filter_map(|m| match m {
                Message::Metadata { ext_id: 9, msg } => Some(msg),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn metadata_is_advertised_and_served_in_pieces_within_a_budget() {
        let mut s = state(4, BLOCK_SIZE as u64);
        let info: Vec<u8> = (0..METADATA_PIECE_LEN * 2 + 100)
            .map(|i| (i % 251) as u8)
            .collect();
        s.metadata = Some(info.clone().into());
        let (wtx, _wrx) = waker();
        let addr = SocketAddr::from(([127, 0, 0, 3], 5));
        let key = s.register(addr, PeerId([3; 20]), true, true, wtx);
        let ours = s.take_outgoing(key, 0, 0).messages;
        let Some(Message::ExtendedHandshake(hs)) = ours.first() else {
            panic!("no extension handshake: {ours:?}");
        };
        assert_eq!(hs.ut_metadata, Some(metadata::OUR_UT_METADATA_ID));
        assert_eq!(hs.metadata_size, Some(info.len() as u64));
        let theirs = ExtendedHandshake {
            ut_metadata: Some(9),
            ..Default::default()
        };
        s.on_message(key, Message::ExtendedHandshake(theirs))
            .unwrap();
        let ask = |piece| Message::Metadata {
            ext_id: metadata::OUR_UT_METADATA_ID,
            msg: MetadataMessage::Request { piece },
        };
        for piece in [0, 2, 3] {
            s.on_message(key, ask(piece)).unwrap();
        }
        let replies = metadata_replies(&mut s, key);
        assert_eq!(
            replies,
            vec![
                MetadataMessage::Data {
                    piece: 0,
                    total_size: info.len() as u64,
                    data: info[..METADATA_PIECE_LEN].to_vec()
                },
                MetadataMessage::Data {
                    piece: 2,
                    total_size: info.len() as u64,
                    data: info[2 * METADATA_PIECE_LEN..].to_vec()
                },
                MetadataMessage::Reject { piece: 3 },
            ]
        );
        // A peer asking in a loop gets rejects past its budget, then more
        // once the window has passed.
        let now = Instant::now();
        let mut data = 0;
        for _ in 0..METADATA_PIECES_PER_SEC * 3 {
            s.on_metadata(key, MetadataMessage::Request { piece: 1 }, now)
                .unwrap();
        }
        for m in metadata_replies(&mut s, key) {
            data += matches!(m, MetadataMessage::Data { .. }) as u32;
        }
        assert!(data <= METADATA_PIECES_PER_SEC, "{data} pieces in a second");
        s.on_metadata(
            key,
            MetadataMessage::Request { piece: 1 },
            now + METADATA_WINDOW,
        )
        .unwrap();
        assert!(matches!(
            metadata_replies(&mut s, key)[..],
            [MetadataMessage::Data { piece: 1, .. }]
        ));
    }

    #[test]
    fn without_metadata_requests_are_rejected_and_nothing_is_advertised() {
        let mut s = state(4, BLOCK_SIZE as u64);
        let addr = SocketAddr::from(([127, 0, 0, 3], 5));
        let (wtx, _wrx) = waker();
        let key = s.register(addr, PeerId([3; 20]), true, true, wtx);
        let ours = s.take_outgoing(key, 0, 0).messages;
        let Some(Message::ExtendedHandshake(hs)) = ours.first() else {
            panic!("no extension handshake: {ours:?}");
        };
        assert_eq!((hs.ut_metadata, hs.metadata_size), (None, None));
        let theirs = ExtendedHandshake {
            ut_metadata: Some(9),
            ..Default::default()
        };
        s.on_message(key, Message::ExtendedHandshake(theirs))
            .unwrap();
        let ask = Message::Metadata {
            ext_id: metadata::OUR_UT_METADATA_ID,
            msg: MetadataMessage::Request { piece: 0 },
        };
        s.on_message(key, ask).unwrap();
        assert_eq!(
            metadata_replies(&mut s, key),
            vec![MetadataMessage::Reject { piece: 0 }]
        );
    }

    #[test]
    fn private_torrents_do_not_exchange_peers() {
        let mut s = state(4, BLOCK_SIZE as u64);
        s.pex_enabled = false;
        let _ = add_peer(&mut s, 1001);
        let addr = SocketAddr::from(([127, 0, 0, 3], 5));
        let (c, offered, _wc) = exchange_handshakes(&mut s, addr, true, None);
        assert_eq!(offered, None);
        s.tick(Instant::now() + Duration::from_secs(1));
        assert!(pex_messages(&mut s, c).is_empty());
        let theirs = pex::PexMessage {
            added: vec!["10.9.9.9:6881".parse().unwrap()],
            dropped: vec![],
        };
        s.on_message(
            c,
            Message::Pex {
                ext_id: pex::OUR_UT_PEX_ID,
                pex: theirs,
            },
        )
        .unwrap();
        assert!(s.take_pex_learned().is_empty());
    }

    /// A `ut_pex` message that did not decode reaches the swarm raw and
    /// still counts as the peer's exchange: one sent right after it is
    /// ignored, as before decoding moved to the wire layer.
    #[test]
    fn a_malformed_exchange_counts_toward_the_gap() {
        let mut s = state(4, BLOCK_SIZE as u64);
        let addr = SocketAddr::from(([127, 0, 0, 3], 5));
        let (c, _, _wc) = exchange_handshakes(&mut s, addr, true, None);
        let junk = Message::Extended {
            ext_id: pex::OUR_UT_PEX_ID,
            payload: b"garbage".to_vec(),
        };
        s.on_message(c, junk).unwrap();
        let theirs = pex::PexMessage {
            added: vec!["10.9.9.9:6881".parse().unwrap()],
            dropped: vec![],
        };
        s.on_message(
            c,
            Message::Pex {
                ext_id: pex::OUR_UT_PEX_ID,
                pex: theirs,
            },
        )
        .unwrap();
        assert!(s.take_pex_learned().is_empty());
    }
}
