//! The school calendar: which days schools must report (weekdays minus configured holidays and
//! term breaks), and the periods figures are read over (day, week, month, term).

use chrono::{Datelike, Days, NaiveDate, Weekday};
use serde::Deserialize;

/// Days a period may span: a term is ~5 months; anything longer is a mistake in a request.
pub const PERIOD_DAYS_MAX: u64 = 200;

/// Holidays and breaks, from the server config (`[calendar]`).
///
/// ```toml
/// [calendar]
/// holidays = ["2026-10-01", "2026-10-02"]
/// breaks = [["2027-01-23", "2027-02-28"]]
/// ```
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Calendar {
    /// Single days off (national holidays), `YYYY-MM-DD`. Default: none.
    pub holidays: Vec<NaiveDate>,
    /// Inclusive ranges off (winter and summer breaks). Default: none.
    pub breaks: Vec<(NaiveDate, NaiveDate)>,
}

/// A span to read figures over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    /// Monday to Sunday around the date.
    Week,
    Month,
    /// 1 September to 31 January, or 1 February to 31 July (the Chinese school year's terms).
    Term,
}

impl Period {
    pub fn name(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
            Period::Term => "term",
        }
    }

    /// The first and last day of the period containing `date`.
    pub fn span(self, date: NaiveDate) -> (NaiveDate, NaiveDate) {
        match self {
            Period::Day => (date, date),
            Period::Week => {
                let monday = date - Days::new(u64::from(date.weekday().num_days_from_monday()));
                (monday, monday + Days::new(6))
            }
            Period::Month => {
                let first = date.with_day(1).unwrap_or(date);
                let next = first
                    .checked_add_months(chrono::Months::new(1))
                    .unwrap_or(first);
                (first, next - Days::new(1))
            }
            Period::Term => {
                let y = date.year();
                let ymd = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap_or(date);
                match date.month() {
                    9..=12 => (ymd(y, 9, 1), ymd(y + 1, 1, 31)),
                    1 => (ymd(y - 1, 9, 1), ymd(y, 1, 31)),
                    _ => (ymd(y, 2, 1), ymd(y, 7, 31)),
                }
            }
        }
    }
}

impl Calendar {
    /// Whether schools must report on `date`.
    pub fn is_school_day(&self, date: NaiveDate) -> bool {
        !matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
            && !self.holidays.contains(&date)
            && !self.breaks.iter().any(|(a, b)| *a <= date && date <= *b)
    }

    /// School days from `first` to `last` inclusive, at most [`PERIOD_DAYS_MAX`] days looked at.
    pub fn school_days(&self, first: NaiveDate, last: NaiveDate) -> Vec<NaiveDate> {
        first
            .iter_days()
            .take_while(|d| *d <= last)
            .take(PERIOD_DAYS_MAX as usize)
            .filter(|d| self.is_school_day(*d))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn periods_and_school_days() {
        assert_eq!(
            Period::Week.span(d("2026-11-04")),
            (d("2026-11-02"), d("2026-11-08"))
        );
        assert_eq!(
            Period::Month.span(d("2026-02-14")),
            (d("2026-02-01"), d("2026-02-28"))
        );
        assert_eq!(
            Period::Term.span(d("2027-01-05")),
            (d("2026-09-01"), d("2027-01-31"))
        );
        assert_eq!(
            Period::Term.span(d("2027-03-05")),
            (d("2027-02-01"), d("2027-07-31"))
        );
        let calendar = Calendar {
            holidays: vec![d("2026-11-04")],
            breaks: vec![(d("2026-11-05"), d("2026-11-05"))],
        };
        let (a, b) = Period::Week.span(d("2026-11-04"));
        assert_eq!(
            calendar.school_days(a, b),
            vec![d("2026-11-02"), d("2026-11-03"), d("2026-11-06")]
        );
    }
}
