#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| smon_fuzz_targets::membership::run(data));
