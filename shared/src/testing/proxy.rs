//! A TCP proxy a test controls, to put network faults between a service
//! and what it talks to (say, a gateway and Redis): every connection made
//! to the proxy is piped to the upstream address, and the test can make
//! one direction of every connection silent ([`Fault::Drop`]: bytes are
//! read and thrown away, as by a blackhole), stop it ([`Fault::Stall`]:
//! nothing is read, so the sender's buffers fill), cut every connection,
//! or cut them in the middle of the next chunk from upstream (a reply cut
//! short). A fault applies to the connections open now and to new ones.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Which way bytes flow through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the proxy's client to the upstream server (requests).
    ToUpstream,
    /// From the upstream server back to the client (replies, pushes).
    ToClient,
}

/// What the proxy does to the connections through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Pipes bytes both ways.
    #[default]
    None,
    /// Reads the bytes going this way and throws them away.
    Drop(Direction),
    /// Stops reading the bytes going this way until the fault is lifted.
    Stall(Direction),
}

/// State every pump watches.
#[derive(Debug, Clone, Copy, Default)]
struct Control {
    fault: Fault,
    /// Connections opened before this cut number are closed.
    cuts: u64,
}

/// A running proxy; stops (and closes every connection) when dropped.
pub struct Proxy {
    addr: SocketAddr,
    control: watch::Sender<Control>,
    /// Set: the next chunk from upstream is cut in half and its connection closed.
    truncate: Arc<AtomicBool>,
    open: Arc<AtomicUsize>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and pipes every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let (control, watching) = watch::channel(Control::default());
        let open = Arc::new(AtomicUsize::new(0));
        let truncate = Arc::new(AtomicBool::new(false));
        let accept = tokio::spawn(accept(
            listener,
            upstream,
            watching,
            truncate.clone(),
            open.clone(),
        ));
        Proxy {
            addr,
            control,
            truncate,
            open,
            accept,
        }
    }

    /// The address to connect to instead of the upstream one.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Applies `fault` to every connection, open and future.
    pub fn set(&self, fault: Fault) {
        self.control.send_modify(|c| c.fault = fault);
    }

    /// Closes every open connection (new ones are piped as before).
    pub fn cut(&self) {
        self.control.send_modify(|c| c.cuts += 1);
    }

    /// Forwards only half of the next chunk from upstream, then closes
    /// that chunk's connection: a reply cut short.
    pub fn cut_mid_reply(&self) {
        self.truncate.store(true, Ordering::Relaxed);
    }

    /// How many connections are piped now.
    pub fn connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Closing every connection: pumps end when the control channel does.
    }
}

async fn accept(
    listener: TcpListener,
    upstream: SocketAddr,
    control: watch::Receiver<Control>,
    truncate: Arc<AtomicBool>,
    open: Arc<AtomicUsize>,
) {
    while let Ok((client, _)) = listener.accept().await {
        let Ok(server) = TcpStream::connect(upstream).await else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let born = control.borrow().cuts;
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        open.fetch_add(1, Ordering::Relaxed);
        let open = open.clone();
        let (up, down) = (control.clone(), control.clone());
        let truncate = truncate.clone();
        tokio::spawn(async move {
            let to_upstream = pump(
                client_read,
                server_write,
                Direction::ToUpstream,
                up,
                born,
                None,
            );
            let to_client = pump(
                server_read,
                client_write,
                Direction::ToClient,
                down,
                born,
                Some(truncate),
            );
            // Either side ending ends the connection: both halves drop here.
            tokio::select! {
                _ = to_upstream => {}
                _ = to_client => {}
            }
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Copies `from` to `to` under the proxy's control until either closes or
/// the connection is cut.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    way: Direction,
    mut control: watch::Receiver<Control>,
    born: u64,
    truncate: Option<Arc<AtomicBool>>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let now = *control.borrow_and_update();
        if now.cuts != born {
            return;
        }
        if now.fault == Fault::Stall(way) {
            // Read nothing until the fault changes (or the proxy stops).
            if control.changed().await.is_err() {
                return;
            }
            continue;
        }
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            changed = control.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        let now = *control.borrow();
        if now.cuts != born {
            return;
        }
        if now.fault == Fault::Drop(way) {
            continue;
        }
        if truncate
            .as_ref()
            .is_some_and(|t| t.swap(false, Ordering::Relaxed))
        {
            let _ = to.write_all(&buf[..n / 2]).await;
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
