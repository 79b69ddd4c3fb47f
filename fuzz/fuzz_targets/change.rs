//! cargo-fuzz target `change`: see `tests/it/fuzz_run.rs` for what it decodes.
#![no_main]

#[path = "../../tests/it/fuzz_run.rs"]
mod fuzz_run;

static QUIET: std::sync::Once = std::sync::Once::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // libfuzzer-sys aborts on every panic, even one the code catches (automerge's, which the
    // store and the sync code turn into errors): keep the hook quiet, so only a panic that
    // escapes `run` (caught and aborted on by libfuzzer-sys) is a crash.
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    fuzz_run::run("change", data);
});
