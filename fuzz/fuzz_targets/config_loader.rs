//! Fuzz target: the config loader (file, user profile, env, --set layers).
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| oj_fuzz::config_loader(data));

#[cfg(not(fuzzing))]
fn main() {
    oj_fuzz::replay_main("config_loader", oj_fuzz::config_loader);
}
