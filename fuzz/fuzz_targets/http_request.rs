//! Feeds arbitrary bytes to the health endpoints' HTTP request parser
//! (`--serve --health-port`, and `peergate await`'s loopback port): it must
//! never panic, and a request it accepts has a path that starts with `/`
//! and carries no query string.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peergate::http::{self, Parsed};

fuzz_target!(|data: &[u8]| {
    if let Parsed::Request(r) = http::parse(data) {
        assert!(r.path.starts_with('/') && !r.path.contains('?'));
        assert!(!r.method.is_empty());
    }
    let _ = http::parse_response(data);
});
