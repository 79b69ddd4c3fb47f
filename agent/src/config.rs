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
    /// Storage engine of a new store, `redb` or `sled`. Default: `--engine`, then the
    /// `SCHOOLSYNC_ENGINE` variable, then redb. An existing store keeps the engine it was made
    /// with; naming another one is refused.
    pub engine: Option<schoolsync_store::Engine>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            clerk: None,
            lang: None,
            province: PROVINCE_HEBEI.to_owned(),
            counties: CountyTable::default(),
            rules: RulesConfig::default(),
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
        std::fs::write(&path, "colour = 1\n").unwrap();
        assert!(Config::load(&path, false).is_err());
    }
}
