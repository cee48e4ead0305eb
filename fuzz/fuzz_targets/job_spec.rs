//! Fuzz target: the job-spec decoder (`POST /v1/jobs` bodies).
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| oj_fuzz::job_spec(data));

#[cfg(not(fuzzing))]
fn main() {
    oj_fuzz::replay_main("job_spec", oj_fuzz::job_spec);
}
