//! The `webhook-worker` binary: parses the command line and hands over to the library.

// The delivery path allocates per event (JSON trees, bodies, headers) across threads; mimalloc
// measured faster than glibc's malloc in the bench binary (see docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    webhook_worker::cli::main()
}
