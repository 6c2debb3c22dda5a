//! A TCP proxy on 127.0.0.1 whose link the test cuts and restores: a broker that goes
//! away and comes back, as forebay sees it, without stopping the broker other tests
//! share.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct CutProxy {
    pub addr: SocketAddr,
    up: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl CutProxy {
    /// Forwards every connection made to its address to `target`, while up.
    pub async fn start(target: SocketAddr) -> Self {
        Self::start_at("127.0.0.1:0".parse().unwrap(), target).await
    }

    /// [`Self::start`] on a given address.
    pub async fn start_at(addr: SocketAddr, target: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let (up, watch_up) = watch::channel(true);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                // Down: a connection is closed as soon as it is made.
                if !*watch_up.borrow() {
                    continue;
                }
                tokio::spawn(forward(client, target, watch_up.clone()));
            }
        });
        Self { addr, up, accept }
    }

    /// Closes every forwarded connection, and each new one at once, until [`Self::restore`].
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.up.send_replace(false);
    }
}

async fn forward(mut client: TcpStream, target: SocketAddr, mut up: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = up.wait_for(|up| !up) => {}
    }
}
