//! The `supervisor` binary, the front end: the command line, the client verbs and the step
//! commands, over the daemon library ([`supervisor`]) and supervisor-proto. See [`cli`].

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
