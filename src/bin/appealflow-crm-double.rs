//! `appealflow-crm-double`: a stand-in CRM implementing the Search Client API from a JSON file
//! of clients, with injectable delay and failures (docs/crm.md). For demos and manual tests.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use appealflow::crm::double::{self, DoubleOptions};

#[derive(Parser)]
#[command(name = "appealflow-crm-double", version, about = "Test double of a CRM's Search Client API")]
struct Cli {
    /// JSON array of clients: `[{"crm_id", "name", "contacts": [{"type", "value"}], "fields": {}}]`.
    #[arg(long)]
    clients: PathBuf,
    /// Address to listen on; port 0 picks a free one (the bound address is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:8099")]
    listen: String,
    /// Require `Authorization: Bearer TOKEN` (401 otherwise).
    #[arg(long, env = "CRM_DOUBLE_TOKEN")]
    token: Option<String>,
    /// Wait this long before every answer ("0ms", "3s").
    #[arg(long, default_value = "0ms", value_parser = appealflow::config::parse_duration)]
    delay: Duration,
    /// Answer every search with this status (e.g. 503) instead of searching.
    #[arg(long)]
    fail_status: Option<u16>,
    /// Region for phone numbers written without a country code in the clients file.
    #[arg(long, default_value = "RU")]
    region: String,
    /// Serve HTTPS with this PEM certificate (chain); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let clients = double::load_clients(&cli.clients).map_err(anyhow::Error::msg)?;
    let options = DoubleOptions {
        token: cli.token,
        delay: cli.delay,
        fail_status: cli.fail_status,
        region: cli.region,
        tls: cli.tls_cert.zip(cli.tls_key),
    };
    let (addr, handle) = double::serve(clients, options, &cli.listen).await?;
    // The address alone on stdout, so scripts can read the port when started with port 0.
    println!("{addr}");
    std::io::stdout().flush()?;
    tokio::select! {
        _ = handle.wait() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
