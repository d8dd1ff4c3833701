//! The `kansas` binary: everything is in `kansas::cli`.

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let code = kansas::cli::main();
    // Access lines are batched; write out the last of them.
    kansas::logging::flush();
    code
}
