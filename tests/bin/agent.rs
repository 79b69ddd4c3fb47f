//! The agent's real `main` under a name the integration tests can rely on (`CARGO_BIN_EXE_*`).

fn main() -> std::process::ExitCode {
    schoolsync_agent::cli::main()
}
