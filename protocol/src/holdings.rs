//! What a tier holds of a school, told upstream so each tier can say where missing data is stuck:
//! not entered at the school, entered but not yet at the county, or at the county but not yet at
//! the city (a DHIS2-style reporting rate, by tier).
//!
//! An agent reports what it has entered (per school day, the classes with an attendance record)
//! and when it last changed anything, to every upstream it can reach; a relay passes its schools' reports on to the city with its
//! own view of each school. Reports are small JSON sent only when they changed, beside sync (so a
//! sync with nothing new stays one round trip).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::ids::SchoolId;

/// School days a report covers at most (two months back is what completeness looks at).
pub const HOLDINGS_DAYS_MAX: usize = 400;
/// Reports in one request at most (a relay forwards its county's).
pub const HOLDINGS_PER_REQUEST_MAX: usize = 1024;

/// Whose view a report is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    School,
    Relay,
}

impl Tier {
    pub fn name(self) -> &'static str {
        match self {
            Tier::School => "school",
            Tier::Relay => "relay",
        }
    }
}

/// One tier's view of one school.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holdings {
    pub school: SchoolId,
    pub tier: Tier,
    /// When the report was made (ms since the epoch, the reporter's clock).
    pub as_of_ms: i64,
    /// When the school last changed anything locally (school reports only).
    #[serde(default)]
    pub last_change_ms: Option<i64>,
    /// Per school day: classes with an attendance record held.
    pub days: BTreeMap<NaiveDate, u32>,
    /// School reports: the county relay (the first upstream) had confirmed every local change
    /// when the report was made. Lets the city tell "at the county" from "at the school" while
    /// the relay cannot reach it.
    #[serde(default)]
    pub relay_confirmed: bool,
}

impl Holdings {
    /// Checks the report's size.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.days.len() > HOLDINGS_DAYS_MAX {
            return Err("too many days in one report");
        }
        Ok(())
    }
}
