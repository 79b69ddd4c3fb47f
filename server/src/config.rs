//! Server settings from flags and an optional TOML config file (flags win). Each field's doc
//! gives its default.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The config file: every field optional, the same names as the flags.
///
/// ```toml
/// listen = "0.0.0.0:8443"
/// data_dir = "/var/lib/schoolsync"
/// tls_cert = "/etc/schoolsync/server.pem"
/// tls_key = "/etc/schoolsync/server.key"
/// # relay only:
/// county = "130821"
/// upstream = "https://city.example:8443"
/// ca = "/etc/schoolsync/ca.pem"
/// credential = "/etc/schoolsync/relay-130821.credential"
/// # mutual TLS (optional): the city asks relays for a client certificate ...
/// client_ca = "/etc/schoolsync/ca.pem"
/// # ... and each relay presents one
/// client_cert = "/etc/schoolsync/relay-client.pem"
/// client_key = "/etc/schoolsync/relay-client.key"
/// engine = "redb"
/// ```
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// Address to listen on. Default `0.0.0.0:8443`.
    pub listen: Option<String>,
    /// Where the store lives. Required.
    pub data_dir: Option<PathBuf>,
    /// Server certificate chain (PEM). Required.
    pub tls_cert: Option<PathBuf>,
    /// Server private key (PEM). Required.
    pub tls_key: Option<PathBuf>,
    /// Relay: its county code. Required for a relay.
    pub county: Option<String>,
    /// Relay: the city's URL. Required for a relay.
    pub upstream: Option<String>,
    /// Relay: CA certificate that signed the city's certificate. Default: `ca.pem` beside the
    /// server certificate.
    pub ca: Option<PathBuf>,
    /// Relay: its credential file (from `city enroll-relay`). Required for a relay.
    pub credential: Option<PathBuf>,
    /// City: CA whose client certificates relays must present (mutual TLS). Default: none
    /// (relays are held to their credential only).
    pub client_ca: Option<PathBuf>,
    /// Relay: client certificate (PEM) to present to the city, with `client_key`. Default: none.
    pub client_cert: Option<PathBuf>,
    /// Relay: the client certificate's private key (PEM).
    pub client_key: Option<PathBuf>,
    /// Oversight: the school calendar (holidays, breaks) and small-cell suppression:
    /// `[oversight] suppress_below = 5`, `[oversight.calendar] holidays = ["2026-10-01"]`.
    /// Default: weekdays are school days; nothing suppressed.
    pub oversight: crate::oversight::http::OversightConfig,
    /// Relay: how often to check in with the city when idle, ms. Default 30000.
    pub forward_interval_ms: Option<u64>,
    /// Storage engine of a new store, `redb` or `sled`. Default redb; an existing store keeps
    /// the engine it was made with.
    pub engine: Option<schoolsync_store::Engine>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}
