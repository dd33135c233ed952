//! `size-report`: see `size-report --help`.
use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match size_report::cli::parse(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("size-report: {e} (see --help)");
            return ExitCode::from(size_report::EXIT_BAD_INPUT);
        }
    };
    if args.help {
        print!("{}", size_report::cli::USAGE);
        return ExitCode::SUCCESS;
    }
    let stdout = std::io::stdout();
    match size_report::run(&args, &mut stdout.lock(), &mut std::io::stderr()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(size_report::EXIT_OVER_BUDGET),
        Err(e) => {
            eprintln!("size-report: {e}");
            ExitCode::from(size_report::EXIT_BAD_INPUT)
        }
    }
}
