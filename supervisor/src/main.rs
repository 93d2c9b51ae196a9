//! The `supervisor` binary: the daemon and its command-line client. See [`supervisor::cli`].

fn main() -> std::process::ExitCode {
    supervisor::cli::main()
}
