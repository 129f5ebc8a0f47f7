//! The segment header decoder meets the first block of every file named like a segment: it must
//! accept or refuse it, and never panic. (Input shorter than 4096 bytes is refused by the entry
//! point itself for now; see `evstore::testing::decode_segment_header`.)

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Most inputs are short: pad them with zeros so that the decoder runs on every one.
    let mut block = data.to_vec();
    if block.len() < 4096 {
        block.resize(4096, 0);
    }
    evstore::testing::decode_segment_header(&block);
});
