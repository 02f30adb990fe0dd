//! The `webhook-worker` binary: parses the command line and hands over to the library.

fn main() -> std::process::ExitCode {
    webhook_worker::cli::main()
}
