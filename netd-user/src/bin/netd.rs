//! `netd`: the daemon and its CLI in one binary.

use clap::Parser as _;
use netd_user::cli;
use tracing_subscriber::EnvFilter;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => err.exit(), // --help, --version
        Err(err) => {
            // clap's first line says what is wrong; keep the one-line rule.
            let text = err.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("{first} (see `netd --help`)");
            std::process::exit(2);
        }
    };
    let code = match cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            // One line: the whole context chain, newlines folded.
            eprintln!("error: {}", format!("{err:#}").replace('\n', " "));
            1
        }
    };
    std::process::exit(code);
}
