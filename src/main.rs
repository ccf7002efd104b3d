//! `reel` binary: parses the command line and runs the chosen subcommand.

use clap::Parser;
use reel::config::{Cli, Command, Config, LogFormat};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let config = Config::resolve(args)?;
            run(config.log_format, |shutdown| async move {
                reel::server::serve(config, shutdown).await.map_err(anyhow::Error::from)
            })
        }
        #[cfg(feature = "demo")]
        Command::Demo(args) => {
            let config = Config::resolve(args.serve)?;
            let options = reel::demo::DemoOptions { channel_name: args.channel_name, bitrate_bps: args.bitrate };
            run(config.log_format, |shutdown| async move {
                reel::demo::run(config, options, shutdown).await.map_err(anyhow::Error::from)
            })
        }
    }
}

/// Sets up logging and the runtime, runs `body` until it ends; exits 1 on error.
fn run<F, Fut>(format: LogFormat, body: F) -> anyhow::Result<()>
where
    F: FnOnce(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    init_tracing(format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = runtime.block_on(async {
        // Register the handlers before serving, so that a signal arriving right
        // after the listening line is never the default (fatal) action.
        let shutdown = shutdown_signal()?;
        body(Box::pin(shutdown)).await
    });
    if let Err(e) = result {
        tracing::error!(error = %e, "reel failed");
        eprintln!("reel: {e}");
        std::process::exit(1);
    }
    Ok(())
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

/// A future that resolves on SIGINT or SIGTERM; the handlers are installed at once.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    })
}
