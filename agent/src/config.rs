//! The agent's configuration file (`agent.toml` in the data directory, or `--config FILE`).
//!
//! Raw TOML is parsed into [`Config`] and validated before use: a limit laxer than the national
//! one is refused at start, not discovered in a report. Each field's doc gives its default.

use std::path::Path;

use schoolsync_protocol::ids::{CountyTable, PROVINCE_HEBEI};
use schoolsync_protocol::rules::RulesConfig;
use schoolsync_protocol::Lang;
use serde::Deserialize;

/// File name of the configuration inside the data directory.
pub const CONFIG_FILE: &str = "agent.toml";

/// Everything an operator may set. Every field is optional.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Who records on this machine, written into every change. Default: `--clerk`, then the
    /// `SCHOOLSYNC_CLERK` variable, then the operating-system user name.
    pub clerk: Option<String>,
    /// Message language, `zh` or `en`. Default: `--lang`, then the system locale.
    pub lang: Option<Lang>,
    /// Province digits that school ids must carry; `""` turns the check off. Default `13` (Hebei).
    pub province: String,
    /// Counties the deployment knows. Default: Chengde's twelve.
    pub counties: CountyTable,
    /// Homework, after-school and illness-cluster limits: national defaults, stricter per county.
    pub rules: RulesConfig,
    /// This computer's credential file (from the city's `enroll-school`; `init --credential` or
    /// `enroll` puts it here, readable by its owner only). Default: `credential` in the data
    /// directory.
    pub credential: Option<std::path::PathBuf>,
    /// The clerk desk (the page `run` serves). Default: on, loopback, port 8421, no PIN.
    pub desk: DeskConfig,
    /// Storage engine of a new store, `redb` or `sled`. Default: `--engine`, then the
    /// `SCHOOLSYNC_ENGINE` variable, then redb. An existing store keeps the engine it was made
    /// with; naming another one is refused.
    pub engine: Option<schoolsync_store::Engine>,
}

/// File name of the credential inside the data directory.
pub const CREDENTIAL_FILE: &str = "credential";

/// `[desk]`: the page `schoolsync-agent run` serves to the clerk. Flags of `run` win.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeskConfig {
    /// Serve the desk at all. Default `true`; `run --no-desk` also turns it off.
    pub enabled: bool,
    /// TCP port. Default 8421 (`run --desk-port`); 0 lets the system choose (printed at start).
    pub port: u16,
    /// Address to listen on. Default `127.0.0.1`, this computer only (`run --desk-bind`). Any
    /// other address also needs `allow_remote = true` and a `pin`.
    pub bind: std::net::IpAddr,
    /// Allow a non-loopback `bind` (other computers on the school network). Default `false`.
    pub allow_remote: bool,
    /// A PIN asked once per browser session, for computers several people use. Default: none
    /// (`run --desk-pin`).
    pub pin: Option<String>,
}

impl Default for DeskConfig {
    fn default() -> Self {
        DeskConfig {
            enabled: true,
            port: DESK_PORT,
            bind: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            allow_remote: false,
            pin: None,
        }
    }
}

/// The desk's default port: fixed, so the clerk's bookmark keeps working; unassigned by IANA.
pub const DESK_PORT: u16 = 8421;

impl Default for Config {
    fn default() -> Self {
        Config {
            clerk: None,
            lang: None,
            province: PROVINCE_HEBEI.to_owned(),
            counties: CountyTable::default(),
            rules: RulesConfig::default(),
            credential: None,
            desk: DeskConfig::default(),
            engine: None,
        }
    }
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("configuration file {path}: {reason}")]
pub struct ConfigError {
    pub path: String,
    pub reason: String,
}

impl Config {
    /// Reads `path`; a missing file is the default configuration unless `required`.
    pub fn load(path: &Path, required: bool) -> Result<Config, ConfigError> {
        let err = |reason: String| ConfigError {
            path: path.display().to_string(),
            reason,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(Config::default())
            }
            Err(e) => return Err(err(e.to_string())),
        };
        let config: Config = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        config.rules.validate().map_err(|e| err(e.to_string()))?;
        if let Some(pin) = &config.desk.pin {
            if pin.trim().is_empty() || pin.len() > crate::desk::PIN_BYTES_MAX {
                return Err(err(format!(
                    "desk.pin must be 1 to {} characters",
                    crate::desk::PIN_BYTES_MAX
                )));
            }
        }
        Ok(config)
    }

    /// The province to check school ids against, if any.
    pub fn province(&self) -> Option<&str> {
        (!self.province.is_empty()).then_some(self.province.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stricter_county_limits_load_and_laxer_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONFIG_FILE);
        assert_eq!(Config::load(&path, false).unwrap().province, "13");
        assert!(Config::load(&path, true).is_err());
        std::fs::write(
            &path,
            "clerk = \"李老师\"\n[rules.county.130821]\nwritten_minutes_grade_3_6 = 45\nworkday_end = \"17:30\"\n",
        )
        .unwrap();
        let config = Config::load(&path, false).unwrap();
        assert_eq!(
            config.rules.for_county("130821").written_minutes_grade_3_6,
            45
        );
        assert_eq!(config.clerk.as_deref(), Some("李老师"));
        std::fs::write(&path, "[rules.default]\nwritten_minutes_grade_3_6 = 70\n").unwrap();
        let e = Config::load(&path, false).unwrap_err();
        assert!(e.reason.contains("written_minutes_grade_3_6"), "{e}");
        std::fs::write(&path, "[desk]\nport = 9000\npin = \"1234\"\n").unwrap();
        let config = Config::load(&path, false).unwrap();
        assert_eq!(
            (config.desk.port, config.desk.pin.as_deref()),
            (9000, Some("1234"))
        );
        assert!(config.desk.bind.is_loopback() && config.desk.enabled);
        std::fs::write(&path, "colour = 1\n").unwrap();
        assert!(Config::load(&path, false).is_err());
    }
}
