//! Feeds arbitrary bytes to the barrier frame decoder: it must never panic,
//! never claim more bytes than it was given, and every frame it accepts
//! must encode back to exactly the bytes it consumed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peergate::barrier::proto::{self, Decoded, MAX_FRAME};

fuzz_target!(|data: &[u8]| {
    match proto::decode(data) {
        Ok(Decoded::Frame(frame, used)) => {
            assert!(used <= data.len() && used <= MAX_FRAME);
            let again = proto::encode(&frame).expect("a decoded frame is encodable");
            assert_eq!(again.as_slice(), &data[..used]);
        }
        Ok(Decoded::NeedMore(n)) => assert!(n > data.len() && n <= MAX_FRAME),
        Err(_) => {}
    }
});
