//! The agent's real `main` under a name the integration tests can rely on (`CARGO_BIN_EXE_*`).
//! Only here, `SCHOOLSYNC_TEST_CLOCK_SKEW_MS` shifts the agent's clock (the clock-skew story).

fn main() -> std::process::ExitCode {
    if let Some(ms) = std::env::var("SCHOOLSYNC_TEST_CLOCK_SKEW_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        schoolsync_agent::clock::skew(ms);
    }
    schoolsync_agent::cli::main()
}
