//! The `sessiond` command: `serve`, and `user` and `keys` management.
//! Errors are reported here, once, as plain sentences with their causes
//! (anyhow at the edge only); the debug form and a backtrace only with `-v`.

use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use sessiond::{Application, ServerConfig, StoreHandle};

// Every request makes a handful of short-lived allocations (the decoded
// record, the response); mimalloc's thread-local free lists serve them
// faster than glibc malloc under two busy worker threads.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sessiond",
    version,
    about = "High-availability session management: login, cookie sessions, session APIs"
)]
struct Cli {
    /// TOML configuration file (values there are overridden by SESSIOND_* variables and flags).
    #[arg(long, global = true, env = "SESSIOND_CONFIG")]
    config: Option<PathBuf>,
    /// Folder of the embedded store.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Redis store URL (redis://, redis+sentinel://h:p,h:p/name, redis+cluster://h:p,h:p) instead of the embedded store.
    #[arg(long, global = true)]
    store: Option<String>,
    /// On an error, also print its debug form (with a backtrace when
    /// RUST_BACKTRACE=1 is set).
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Create a demo user and a demo admin with random passwords, printed once.
        #[arg(long)]
        demo: bool,
    },
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage the access-token signing keys (shared by every node on the store).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage the service API's keys (for other backends and automation).
    #[command(subcommand)]
    ServiceKey(ServiceKeyCommand),
}

#[derive(Subcommand)]
enum ServiceKeyCommand {
    /// Create a key and print it (once: only its hash is kept).
    Add {
        /// Its name (letters, digits, '-', '_', '.').
        name: String,
        /// What it may do, comma-separated: sessions:read, sessions:write,
        /// users:read, users:write, keys:rotate, admin.
        #[arg(long, value_delimiter = ',', required = true)]
        scope: Vec<String>,
        /// Its own rate limit, e.g. `100/s`, `20/m`, `1000/h`.
        #[arg(long)]
        rate: Option<String>,
    },
    /// List the keys: name, scopes, created, last used.
    List,
    /// Revoke a key: it stops working on every node at once.
    Revoke {
        /// Its name.
        name: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Retire the active signing key and sign with a new one. Tokens signed
    /// with the old key stay valid until they expire.
    Rotate,
    /// List the keys: kid, algorithm, created, retired.
    List,
    /// Print a new random key-encryption key (for `key_encryption_key_file`).
    NewEncryptionKey,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user.
    Add {
        /// Login name.
        name: String,
        /// Role (for example `user` or `admin`).
        #[arg(long, default_value = "user")]
        role: String,
        /// Read the password from standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password (ends all of their sessions).
    Passwd {
        /// Login name.
        name: String,
        /// Read the password from standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
    /// Import users from a CSV file of `name,password,role` lines.
    Import {
        /// The CSV file.
        file: PathBuf,
        /// Let in passwords the password rules refuse (1 to 1024
        /// characters are enough): for test and benchmark data, never for
        /// real users. Logged as a warning.
        #[arg(long)]
        allow_weak_passwords: bool,
    },
}

fn read_password(from_stdin: bool) -> Result<String> {
    if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    let first = rpassword::prompt_password("Password: ")?;
    let again = rpassword::prompt_password("Password again: ")?;
    if first != again {
        bail!("the passwords differ");
    }
    Ok(first)
}

/// Logs to stderr (`log_format`: `json` for production, readable text for a
/// terminal), filtered by `SESSIOND_LOG`; spans to OTLP when configured.
fn init_logging(config: &ServerConfig) -> Result<()> {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{EnvFilter, fmt};
    let filter = EnvFilter::try_from_env("SESSIOND_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = if config.json_logs() {
        fmt::layer().json().with_writer(std::io::stderr).boxed()
    } else {
        fmt::layer().with_writer(std::io::stderr).boxed()
    };
    let registry = tracing_subscriber::registry().with(logs.with_filter(filter));
    #[cfg(feature = "otel")]
    {
        let otel = match &config.observability.otlp_endpoint {
            // Store calls and password hashing are debug spans: exported, not logged.
            Some(endpoint) => Some(
                sessiond::telemetry::otlp_layer(endpoint)
                    .context("setting up OTLP export")?
                    .with_filter(EnvFilter::new("info,sessiond=debug,sessiond_core=debug")),
            ),
            None => None,
        };
        registry.with(otel).init();
    }
    #[cfg(not(feature = "otel"))]
    {
        registry.init();
        if config.observability.otlp_endpoint.is_some() {
            tracing::warn!(
                "otlp_endpoint is set but this build has no `otel` feature; no traces are exported"
            );
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!("shutting down: finishing in-flight requests");
}

fn random_password() -> String {
    sessiond_core::token::random_secret()[..20].to_owned()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let verbose = cli.verbose;
    let ran = tokio::runtime::Runtime::new()
        .context("starting the async runtime")
        .and_then(|runtime| runtime.block_on(run(cli)));
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            // Some errors repeat their source's text in their own (an I/O
            // error wrapped by the Redis client): say each thing once.
            let mut said = e.to_string();
            for cause in e.chain().skip(1).map(|c| c.to_string()) {
                if !said.contains(&cause) {
                    eprintln!("  because: {cause}");
                }
                said = cause;
            }
            if verbose {
                eprintln!("\n{e:?}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let mut config = ServerConfig::load(cli.config.as_deref())?;
    if let Some(dir) = cli.data_dir {
        config.store.data_dir = dir;
    }
    if let Some(url) = cli.store {
        config.store.url = Some(url);
    }
    match cli.command {
        Command::Serve { listen, demo } => {
            if let Some(addr) = listen {
                config.server.listen = addr;
            }
            init_logging(&config)?;
            if config.observability.metrics {
                // Before the store opens, so that its first metrics are recorded.
                let _ = sessiond::observe::metrics_handle();
            }
            let store = StoreHandle::open(&config).await?;
            if demo {
                let accounts = store.accounts(&config)?;
                let (user_pw, admin_pw) = (random_password(), random_password());
                accounts.ensure("demo", user_pw.clone(), "user").await?;
                accounts.ensure("admin", admin_pw.clone(), "admin").await?;
                println!(
                    "demo accounts (passwords shown once):\n  demo  / {user_pw}\n  admin / {admin_pw}"
                );
            }
            let app = Application::build(config.clone(), store).await?;
            let addr = app.local_addr();
            tracing::info!(%addr, data_dir = %config.store.data_dir.display(), "sessiond listening");
            println!("sessiond listening on http://{addr}");
            app.run_until(shutdown_signal()).await.context("serving")?;
        }
        Command::User(cmd) => {
            let store = StoreHandle::open(&config).await?;
            let accounts = store.accounts(&config)?;
            match cmd {
                UserCommand::Add {
                    name,
                    role,
                    password_stdin,
                } => {
                    accounts
                        .add(&name, read_password(password_stdin)?, &role)
                        .await?;
                    println!("added {name} ({role})");
                }
                UserCommand::Passwd {
                    name,
                    password_stdin,
                } => {
                    let ended = accounts
                        .set_password(&name, read_password(password_stdin)?)
                        .await?;
                    println!("password of {name} changed; {ended} sessions ended");
                }
                UserCommand::List => {
                    for u in store.backend.list_users().await? {
                        println!("{}\t{}", u.name, u.roles.join(","));
                    }
                }
                UserCommand::Import {
                    file,
                    allow_weak_passwords,
                } => {
                    let text = std::fs::read_to_string(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?;
                    if allow_weak_passwords {
                        tracing::warn!(target: "sessiond::security", event = "weak_passwords_allowed", file = %file.display(), "importing users without the password rules: for test and benchmark data only");
                    }
                    let (added, skipped) = accounts.import(&text, allow_weak_passwords).await?;
                    println!("imported {added} users; {} existed already", skipped.len());
                }
            }
            store.close().await;
        }
        Command::Keys(KeysCommand::NewEncryptionKey) => {
            // A new key needs no store: print it and leave.
            println!("{}", sessiond_jwt::KeyEncryptionKey::generate_text()?);
        }
        Command::Keys(cmd @ (KeysCommand::Rotate | KeysCommand::List)) => {
            let store = StoreHandle::open(&config).await?;
            let tokens = sessiond::tokens::TokenService::new(
                store.backend.clone(),
                config.token_settings(),
                std::sync::Arc::new(sessiond_core::SystemClock),
            );
            if matches!(cmd, KeysCommand::Rotate) {
                let kid = tokens.rotate().await?;
                println!("rotated: new signing key {kid}");
            } else {
                for (kid, alg, created, retired) in tokens.describe().await? {
                    let state = retired.map_or("active".to_owned(), |at| format!("retired {at}"));
                    println!("{kid}\t{alg}\tcreated {created}\t{state}");
                }
            }
            store.close().await;
        }
        Command::ServiceKey(cmd) => {
            let store = StoreHandle::open(&config).await?;
            let keys = sessiond::service_keys::ServiceKeys::new(
                store.backend.clone(),
                std::sync::Arc::new(sessiond_core::SystemClock),
            );
            match cmd {
                ServiceKeyCommand::Add { name, scope, rate } => {
                    let scopes = scope.iter().map(|s| s.parse()).collect::<Result<_, _>>()?;
                    let (_, secret) = keys.add_limited(&name, scopes, rate.as_deref()).await?;
                    println!("{secret}");
                    eprintln!("service key {name} created; it is shown once, keep it secret");
                }
                ServiceKeyCommand::List => {
                    for key in keys.list().await? {
                        let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
                        let used = key.last_used.map_or_else(
                            || "never used".to_owned(),
                            |at| format!("last used {at}"),
                        );
                        println!(
                            "{}	{}	created {}	{used}",
                            key.name,
                            scopes.join(","),
                            key.created_at
                        );
                    }
                }
                ServiceKeyCommand::Revoke { name } => {
                    if !keys.revoke(&name).await? {
                        store.close().await;
                        bail!("no service key named {name:?}");
                    }
                    println!("revoked {name}");
                }
            }
            store.close().await;
        }
    }
    Ok(())
}
