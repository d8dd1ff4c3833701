//! The `kansas` binary: everything is in `kansas::cli`.

fn main() -> std::process::ExitCode {
    kansas::cli::main()
}
