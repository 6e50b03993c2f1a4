//! `persona`: the customer data platform in one binary.
//!
//! This crate only parses the command line and wires the stages together; every stage's
//! logic lives in its own crate (`persona-log`, `persona-collector`, ...). Commands:
//! `serve`, `simulate`, `import`, `import-profiles`, `profiles export|stats`, `log stats`,
//! the admin commands (`segments`, `models`, `webhooks`, `jobs`, `sql`) and `bench ...`.

mod admin;
mod bench;
mod cli;
mod client;
mod cluster;
mod dashboard;
mod http_server;
mod import;
mod jsonl;
mod keys;
mod lingering;
mod logcmd;
mod maintenance;
mod openapi;
mod paths;
mod profiles;
mod say;
mod serve;
mod settings;
mod simulate;
mod sqlcmd;
mod table;
mod write_deadline;

use clap::Parser;

// glibc's allocator spent a sixth of the ingest path's CPU when buffers allocated on one
// HTTP worker were freed on another thread (the log's group commit); mimalloc handles that
// pattern well.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use crate::cli::{BenchCommand, Cli, Command, LogCommand, ProfilesCommand};

/// `mi_option_purge_delay` in mimalloc's `mi_option_t` (v2 and v3 headers alike).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> std::process::ExitCode {
    // mimalloc hands freed memory back to the OS after 10 ms by default. The processor frees
    // and reallocates the same few hundred MB every micro-batch, and re-faulting those pages
    // in cost a quarter of its time; a second's delay keeps them while the load lasts.
    // SAFETY: setting an option is a plain store in mimalloc's option table.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 1000) };
    let cli = Cli::parse();
    init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Simulate(args) => simulate::run(args).await,
            Command::Import(args) => import::run(args).await,
            Command::ImportProfiles(args) => profiles::import(args).await,
            Command::Profiles {
                command: ProfilesCommand::Export(args),
            } => profiles::export(args),
            Command::Profiles {
                command: ProfilesCommand::Stats(args),
            } => profiles::stats(args),
            Command::Cluster(args) => cluster::run(*args),
            Command::Segments { server, command } => admin::segments(server, command).await,
            Command::Models { server, command } => admin::models(server, command).await,
            Command::Webhooks { server, command } => admin::webhooks(server, command).await,
            Command::Jobs { server, command } => admin::jobs(server, command).await,
            Command::Sql(args) => sqlcmd::sql(args).await,
            Command::Log {
                command: LogCommand::Stats(args),
            } => logcmd::stats(args),
            Command::Log {
                command: LogCommand::Verify(args),
            } => logcmd::verify(args),
            Command::Bench {
                command: BenchCommand::Ingest(args),
            } => bench::ingest::ingest(args).await,
            Command::Bench {
                command: BenchCommand::NoopServer(args),
            } => bench::ingest::noop_server(args).await,
            Command::Bench {
                command: BenchCommand::CollectorServer(args),
            } => bench::collector_alone::collector_server(args).await,
            Command::Bench {
                command: BenchCommand::Profiles(args),
            } => bench::profiles::profiles(args).await,
            Command::Bench {
                command: BenchCommand::Segments(args),
            } => bench::segments::segments(args).await,
            Command::Bench {
                command: BenchCommand::Cluster(args),
            } => bench::cluster::cluster(args),
            Command::Bench {
                command: BenchCommand::Webhooks(args),
            } => bench::webhooks::webhooks(args).await,
            Command::Bench {
                command: BenchCommand::Sql(args),
            } => bench::sql::sql(args).await,
            Command::Bench {
                command: BenchCommand::Store(args),
            } => bench::store::store(args).await,
            Command::Bench {
                command: BenchCommand::Kafka(args),
            } => bench::kafka::kafka(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            say::say!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PERSONA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,lsm_tree=warn,fjall=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
