//! The group header decoder meets whatever lies at a block boundary of a segment: it must accept
//! or refuse it, and never panic. (Input shorter than 32 bytes is refused by the entry point
//! itself for now; see `evstore::testing::decode_group_header`.)

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    evstore::testing::decode_group_header(data);
});
