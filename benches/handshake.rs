//! CPU cost of one barrier handshake (protocol v2), both ends together:
//! nonces, the dialer's proof, both HELLOs with their tags, the frame keys,
//! then one sealed frame each way. Runs in memory (tokio duplex pipes), so
//! what it measures is the computation, not a network.
//!
//! `cargo bench --bench handshake` (knob: PEERGATE_BENCH_HANDSHAKES, default
//! 20000). Prints the process CPU time per handshake (user + system, from
//! getrusage), median and worst over 5 batches.

use std::net::SocketAddr;
use std::time::Duration;

use peergate::rendezvous::auth::{Binding, Key};
use peergate::rendezvous::proto::{Hello, InstanceId, Sealed};
use peergate::rendezvous::session::{self, FrameReader, Local, Role};

fn cpu() -> Duration {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn pod(index: u32) -> Local {
    Local::new(
        Key::new("0f6b0a34-5b3e-4d64-a1c9-9a4cfd3f5a10"),
        Hello {
            job: "example-job".into(),
            world: 1000,
            index,
            instance: InstanceId::random(),
            started_ms: 1_764_500_000_000,
            serving: false,
            addrs: vec![
                format!("10.244.{}.{}", index / 250, index % 250 + 1)
                    .parse()
                    .unwrap(),
            ],
        },
    )
    .expect("valid claims")
}

async fn one(d: &Local, l: &Local, b: Binding) {
    let (x, y) = tokio::io::duplex(1 << 16);
    let (xr, xw) = tokio::io::split(x);
    let (yr, yw) = tokio::io::split(y);
    let (a, c) = tokio::join!(
        session::handshake(
            d,
            Role::Dialer {
                expect: Some(l.hello.index)
            },
            b,
            FrameReader::new(xr),
            xw
        ),
        session::handshake(l, Role::Listener, b, FrameReader::new(yr), yw)
    );
    let (_, mut ar, mut aw) = a.expect("dialer");
    let (_, mut cr, mut cw) = c.expect("listener");
    aw.send(&Sealed::Complete).await.unwrap();
    cw.send(&Sealed::Complete).await.unwrap();
    assert_eq!(cr.next().await.unwrap(), Some(Sealed::Complete));
    assert_eq!(ar.next().await.unwrap(), Some(Sealed::Complete));
}

fn main() {
    let n: usize = std::env::var("PEERGATE_BENCH_HANDSHAKES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (d, l) = (pod(999), pod(249));
    let b = Binding {
        dialer: "10.244.3.250:40000".parse::<SocketAddr>().unwrap(),
        listener: "10.244.0.250:7470".parse::<SocketAddr>().unwrap(),
    };
    let mut per = Vec::new();
    for _ in 0..5 {
        let start = cpu();
        rt.block_on(async {
            for _ in 0..n {
                one(&d, &l, b).await;
            }
        });
        per.push((cpu() - start).as_secs_f64() * 1e6 / n as f64);
    }
    per.sort_by(f64::total_cmp);
    println!(
        "barrier handshake, both ends, plus one sealed frame each way: {:.1} µs CPU median, {:.1} µs worst ({} batches of {n})",
        per[2],
        per[4],
        per.len()
    );
}
