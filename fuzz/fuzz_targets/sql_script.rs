//! Bytes → a SQL script through sluice's front end and a few micro-batches, see
//! [`sluice_fuzz::sql_script`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::sql_script(data));
