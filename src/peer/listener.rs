//! The peerwire listener: accepts connections and hands them to the swarm.
//! Stopped by setting the swarm's shutdown flag and connecting to itself,
//! which wakes the blocked `accept`.

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::Swarm;

pub struct Listener {
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    pub fn bind(ip: IpAddr, port: u16) -> std::io::Result<(TcpListener, SocketAddr)> {
        let l = TcpListener::bind((ip, port))?;
        let addr = l.local_addr()?;
        Ok((l, addr))
    }

    pub fn start(listener: TcpListener, swarm: Arc<Swarm>) -> std::io::Result<Listener> {
        let addr = listener.local_addr()?;
        let thread = std::thread::Builder::new()
            .name("peer-listener".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if swarm.is_shutting_down() {
                        break;
                    }
                    match conn {
                        Ok(stream) => match stream.peer_addr() {
                            Ok(peer) => swarm.accept(stream, peer),
                            Err(_) => continue,
                        },
                        Err(e) => {
                            log::warn!("accept failed: {e}");
                            // Out of descriptors and the like: do not spin.
                            std::thread::sleep(std::time::Duration::from_millis(100));
                        }
                    }
                }
            })?;
        Ok(Listener {
            addr,
            thread: Some(thread),
        })
    }

    /// Call after the swarm's shutdown flag is set.
    pub fn stop(mut self) {
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => IpAddr::from([127, 0, 0, 1]),
                SocketAddr::V6(_) => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            });
        }
        let _ = TcpStream::connect_timeout(&wake, std::time::Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
