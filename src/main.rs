//! `reel` binary: parses the command line and runs the chosen subcommand.

use clap::Parser;
use reel::config::{Cli, Command, Config, LogFormat};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let config = Config::resolve(args)?;
            init_tracing(config.log_format);
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            if let Err(e) = runtime.block_on(reel::server::serve(config, shutdown_signal())) {
                tracing::error!(error = %e, "reel failed");
                eprintln!("reel: {e}");
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
