//! TCP connect probe: any answer from the peer's kernel, an accepted or a
//! refused connection, proves the host is up. Silence is "no reply".

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

use super::check::Probe;
use crate::cause::{Cause, io_cause};

pub struct TcpProber {
    port: u16,
    timeout: Duration,
}

impl TcpProber {
    pub fn new(port: u16, timeout: Duration) -> Self {
        Self { port, timeout }
    }
}

impl Probe for TcpProber {
    async fn probe(&self, addr: IpAddr) -> Result<Duration, Cause> {
        let start = Instant::now();
        match timeout(
            self.timeout,
            TcpStream::connect(SocketAddr::new(addr, self.port)),
        )
        .await
        {
            Err(_) => Err(Cause::NoReply),
            Ok(Ok(_stream)) => Ok(start.elapsed()),
            Ok(Err(e)) if e.kind() == ErrorKind::ConnectionRefused => Ok(start.elapsed()),
            Ok(Err(e)) => Err(io_cause(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_and_refused_both_mean_up() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().port();
        let up = TcpProber::new(open, Duration::from_secs(2));
        assert!(up.probe("127.0.0.1".parse().unwrap()).await.is_ok());
        drop(listener);
        // The port was just closed: the kernel now answers with a reset.
        let refused = TcpProber::new(open, Duration::from_secs(2));
        assert!(refused.probe("127.0.0.1".parse().unwrap()).await.is_ok());
    }
}
