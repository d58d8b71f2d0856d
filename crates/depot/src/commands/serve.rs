use std::process::ExitCode;

use anyhow::Context;
use depot_server::ServerOptions;

use crate::cli::ServeArgs;
use crate::printer::Printer;

pub fn run(args: ServeArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DEPOT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let defaults = ServerOptions::default();
    let options = ServerOptions {
        max_blob_size: args.max_blob_size.unwrap_or(defaults.max_blob_size),
        max_versions: args.max_versions.unwrap_or(defaults.max_versions),
        gc_grace: args.gc_grace.unwrap_or(defaults.gc_grace),
        ..defaults
    };
    fs_err::create_dir_all(&args.data)?;
    let data = fs_err::canonicalize(&args.data)?;
    let (state, first_start) = depot_server::open(&data, options)
        .with_context(|| format!("failed to open the registry in {}", data.display()))?;
    if let Some(first) = first_start {
        printer.message(format!(
            "Created the admin token (shown once; also in {}):\n  {}",
            first.token_file.display(),
            first.admin_token
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("failed to listen on {}", args.listen))?;
        let address = listener.local_addr()?;
        printer.message(format!("depot registry listening on http://{address} (data in {})", data.display()));
        depot_server::serve(listener, state, shutdown_signal()).await?;
        printer.message("depot registry stopped");
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
