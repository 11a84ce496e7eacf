use std::process::ExitCode;

fn main() -> ExitCode {
    deployhost::cli::main()
}
