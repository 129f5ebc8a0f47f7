//! The record decoder meets torn and damaged bytes in recovery and on every read: whatever it is
//! given, it must return an error or a record inside its input, and never panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    evstore::testing::decode_record(data);
});
