//! Feeds arbitrary bytes to the barrier's frame splitter and body decoders
//! (protocol v2): they must never panic, never claim more bytes than they
//! were given, and every frame or body they accept must encode back to
//! exactly the bytes it came from (one encoding per value).
#![no_main]

use libfuzzer_sys::fuzz_target;
use peergate::rendezvous::proto::{self, Hello, MAX_SEALED_BODY, Sealed, Split};

fuzz_target!(|data: &[u8]| {
    match proto::split(data, MAX_SEALED_BODY) {
        Ok(Split::Frame { kind, body, used }) => {
            assert!(used <= data.len());
            assert_eq!(proto::frame(kind, body), &data[..used]);
            if let Ok(s) = Sealed::decode(kind, body) {
                assert_eq!(s.encode(), body);
            }
            if let Ok(h) = Hello::decode(body) {
                assert_eq!(h.encode().expect("a decoded hello encodes"), body);
            }
        }
        Ok(Split::NeedMore(n)) => assert!(n > data.len()),
        Err(_) => {}
    }
});
