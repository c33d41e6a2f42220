//! Bytes → sluice's CSV decoder, see [`sluice_fuzz::decode_case`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::decode_case(sluice::format::Format::Csv, data));
