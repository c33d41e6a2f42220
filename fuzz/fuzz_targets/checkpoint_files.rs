//! Bytes → one file of a stopped query's checkpoint, then a restart, see
//! [`sluice_fuzz::checkpoint_files`].
//!
//! With `SLUICE_FUZZ_WRITE_SEEDS=<dir>` set, the first run first writes one seed per checkpoint
//! file into `<dir>` (how `fuzz/corpus/checkpoint_files` was made).
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: {
        if let Some(dir) = std::env::var_os("SLUICE_FUZZ_WRITE_SEEDS") {
            for (name, input) in sluice_fuzz::checkpoint_seeds() {
                std::fs::write(std::path::Path::new(&dir).join(name.replace('/', "_")), input).expect("write a seed");
            }
        }
    },
    |data: &[u8]| sluice_fuzz::checkpoint_files(data)
);
