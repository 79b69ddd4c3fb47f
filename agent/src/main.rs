//! `schoolsync-agent`: thin entry point; everything is in `schoolsync_agent::cli`.

fn main() -> std::process::ExitCode {
    schoolsync_agent::cli::main()
}
