#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| smon_fuzz_targets::release_package::run(data));
