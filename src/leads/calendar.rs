//! The business-day calendar that response deadlines and follow-ups are
//! counted in: one time zone, the weekdays that are workdays, daily opening
//! hours and a list of holidays.
//!
//! Every instant is unix seconds (`i64`), as in [`Lead`](super::Lead).
//!
//! # Rules
//!
//! - A *business day* is a local date that is a workday and not a holiday.
//!   Its *window* runs from the opening time (inclusive) to the closing time
//!   (exclusive), both local. The business is *open* inside a window.
//! - [`Calendar::next_open`]`(at)` is `at` itself when open, otherwise the
//!   next opening time.
//! - [`Calendar::add_business_hours`]`(at, h)` is the instant at which `h`
//!   hours of open time have passed since `at`; time outside windows does
//!   not count. It may be exactly a closing time (4 business hours from
//!   13:00 with hours 09:00-17:00 is 17:00, not 09:00 next day). `h = 0`
//!   returns `at`.
//! - [`Calendar::add_business_days`]`(at, n)`: first `at` is moved to
//!   `next_open(at)` (mail that arrives on Saturday is treated as arriving at
//!   Monday's opening); the result is that instant's local wall-clock time on
//!   the `n`-th business day after its date, passed through `next_open` (a
//!   time before the opening becomes the opening, a time at or after the
//!   closing becomes the next business day's opening; this only happens when
//!   a DST change moves the time). So Friday 16:00 + 2 = Tuesday 16:00, and
//!   Saturday 10:00 + 1 = Tuesday 09:00 (Monday is the first full business
//!   day). For `n >= 1` the result is strictly after `at`, on a business
//!   day, inside its window, and grows with `n`. `n = 0` is `next_open(at)`.
//!
//! # Daylight saving time
//!
//! A local time that does not exist on a date (it falls in the gap of a
//! spring-forward change) means the first instant after the gap: opening at
//! 02:30 on a day the clocks jump from 02:00 to 03:00 opens at 03:00. A local
//! time that exists twice (fall-back) means the earlier instant. A date whose
//! opening or closing time resolves to another date (a day skipped by a zone
//! change, as Samoa did in 2011), or whose window is empty, is not a business
//! day.
//!
//! # Range
//!
//! Inputs are clamped to 1900-01-01 .. 9999-12-30 UTC and results saturate at
//! [`MAX_TIME`]. Every loop walks dates towards that horizon, so no input
//! can make a function panic or run forever.

use std::collections::BTreeSet;

use chrono::{
    DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone,
    Timelike, Weekday,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// The earliest instant the calendar computes with (1900-01-01T00:00:00Z).
pub const MIN_TIME: i64 = -2_208_988_800;
/// The latest instant (9999-12-30T00:00:00Z): results saturate here.
pub const MAX_TIME: i64 = 253_402_128_000;

/// The longest stretch of non-existent local time searched past (Samoa
/// skipped a whole day).
const MAX_GAP_MINUTES: i64 = 48 * 60;

/// `[leads.calendar]` in the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CalendarConfig {
    /// IANA name such as "Europe/Berlin".
    pub time_zone: String,
    /// Day names ("mon", "Tuesday", ...).
    pub workdays: Vec<String>,
    /// Opening hours, "HH:MM-HH:MM", the same on every workday.
    pub hours: String,
    /// Dates that are not business days ("2025-12-25", quoted or as a TOML
    /// date).
    #[serde(deserialize_with = "holiday_dates::deserialize")]
    pub holidays: Vec<NaiveDate>,
}

impl Default for CalendarConfig {
    fn default() -> Self {
        Self {
            time_zone: "UTC".into(),
            workdays: ["mon", "tue", "wed", "thu", "fri"].map(String::from).into(),
            hours: "09:00-17:00".into(),
            holidays: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("time_zone {0:?} is not an IANA time zone name such as \"Europe/Berlin\"")]
    TimeZone(String),
    #[error("workday {0:?} is not a day name (mon, tue, wed, thu, fri, sat, sun)")]
    Workday(String),
    #[error("workdays is empty: at least one day of the week must be a business day")]
    NoWorkdays,
    #[error(
        "hours {0:?} is not \"HH:MM-HH:MM\" with the end after the start, such as \"09:00-17:00\""
    )]
    Hours(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    tz: Tz,
    /// Monday first.
    workdays: [bool; 7],
    day_start: NaiveTime,
    day_end: NaiveTime,
    holidays: BTreeSet<NaiveDate>,
}

impl Default for Calendar {
    /// UTC, Monday to Friday, 09:00-17:00, no holidays.
    fn default() -> Self {
        let hour = |h| NaiveTime::from_hms_opt(h, 0, 0).unwrap_or(NaiveTime::MIN);
        Self {
            tz: Tz::UTC,
            workdays: [true, true, true, true, true, false, false],
            day_start: hour(9),
            day_end: hour(17),
            holidays: BTreeSet::new(),
        }
    }
}

impl Calendar {
    /// A calendar from its parts; refuses a week without workdays and hours
    /// whose end is not after their start.
    pub fn new(
        tz: Tz,
        workdays: [bool; 7],
        day_start: NaiveTime,
        day_end: NaiveTime,
        holidays: impl IntoIterator<Item = NaiveDate>,
    ) -> Result<Self, CalendarError> {
        if !workdays.contains(&true) {
            return Err(CalendarError::NoWorkdays);
        }
        if day_end <= day_start {
            return Err(CalendarError::Hours(format!(
                "{}-{}",
                day_start.format("%H:%M"),
                day_end.format("%H:%M")
            )));
        }
        Ok(Self {
            tz,
            workdays,
            day_start,
            day_end,
            holidays: holidays.into_iter().collect(),
        })
    }

    pub fn from_config(cfg: &CalendarConfig) -> Result<Self, CalendarError> {
        let tz = cfg
            .time_zone
            .trim()
            .parse::<Tz>()
            .map_err(|_| CalendarError::TimeZone(cfg.time_zone.clone()))?;
        let mut workdays = [false; 7];
        for name in &cfg.workdays {
            let day = name
                .trim()
                .parse::<Weekday>()
                .map_err(|_| CalendarError::Workday(name.clone()))?;
            workdays[day.num_days_from_monday() as usize] = true;
        }
        let (start, end) = parse_hours(&cfg.hours)?;
        Self::new(tz, workdays, start, end, cfg.holidays.iter().copied())
    }

    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    /// Opening and closing time, local.
    pub fn hours(&self) -> (NaiveTime, NaiveTime) {
        (self.day_start, self.day_end)
    }

    pub fn is_business_day(&self, date: NaiveDate) -> bool {
        self.workdays[date.weekday().num_days_from_monday() as usize]
            && !self.holidays.contains(&date)
    }

    /// The local date of an instant.
    pub fn local_date(&self, at: i64) -> NaiveDate {
        self.local(at).date_naive()
    }

    /// Whether `at` lies inside a business window.
    pub fn is_open(&self, at: i64) -> bool {
        let at = clamp(at);
        self.windows_around(at)
            .take_while(|&(open, _)| open <= at)
            .any(|(open, close)| open <= at && at < close)
    }

    /// `at` when open, otherwise the next opening time.
    pub fn next_open(&self, at: i64) -> i64 {
        let at = clamp(at);
        self.windows_around(at)
            .find(|&(_, close)| close > at)
            .map_or(MAX_TIME, |(open, _)| open.max(at).min(MAX_TIME))
    }

    /// The instant at which `hours` hours of open time have passed since
    /// `at` (see the module docs).
    pub fn add_business_hours(&self, at: i64, hours: u32) -> i64 {
        let at = clamp(at);
        let mut remaining = i64::from(hours) * 3600;
        if remaining == 0 {
            return at;
        }
        for (open, close) in self.windows_around(at) {
            if close <= at {
                continue;
            }
            let start = open.max(at);
            if remaining <= close - start {
                return (start + remaining).min(MAX_TIME);
            }
            remaining -= close - start;
        }
        MAX_TIME
    }

    /// The opening time of `date` (local), or the next opening after it
    /// when that date is not a business day.
    pub fn open_on(&self, date: NaiveDate) -> i64 {
        self.next_open(self.resolve(date.and_time(NaiveTime::MIN)).timestamp())
    }

    /// The same local wall-clock time `n` business days later (see the
    /// module docs for the exact rule).
    pub fn add_business_days(&self, at: i64, n: u32) -> i64 {
        let start = self.next_open(at);
        if n == 0 || start >= MAX_TIME {
            return start;
        }
        let start = self.local(start);
        let skip = usize::try_from(n - 1).unwrap_or(usize::MAX);
        let target = self
            .dates_from(start.date_naive())
            .skip(1)
            .filter(|&date| self.window(date).is_some())
            .nth(skip);
        match target {
            Some(date) => self.next_open(self.resolve(date.and_time(start.time())).timestamp()),
            None => MAX_TIME,
        }
    }

    fn local(&self, at: i64) -> DateTime<Tz> {
        DateTime::from_timestamp(clamp(at), 0)
            .unwrap_or_default()
            .with_timezone(&self.tz)
    }

    /// Local dates from `first` up to the horizon.
    fn dates_from(&self, first: NaiveDate) -> impl Iterator<Item = NaiveDate> {
        let horizon = self.local_date(MAX_TIME);
        first.iter_days().take_while(move |&date| date <= horizon)
    }

    /// Business windows in date order, starting a day before `at`'s local
    /// date (a window of that day may still be open at `at` in a zone that
    /// moves its clocks back across midnight).
    fn windows_around(&self, at: i64) -> impl Iterator<Item = (i64, i64)> + '_ {
        let date = self.local_date(at);
        let first = date.pred_opt().unwrap_or(date);
        self.dates_from(first).filter_map(|date| self.window(date))
    }

    /// Opening and closing instant of a business day.
    fn window(&self, date: NaiveDate) -> Option<(i64, i64)> {
        if !self.is_business_day(date) {
            return None;
        }
        let open = self.resolve(date.and_time(self.day_start));
        let close = self.resolve(date.and_time(self.day_end));
        let on_date = open.date_naive() == date && close.date_naive() == date;
        (on_date && open < close).then(|| (open.timestamp(), close.timestamp()))
    }

    /// A local date and time as an instant: the earlier of two, the first
    /// instant after a gap (see the module docs).
    fn resolve(&self, local: NaiveDateTime) -> DateTime<Tz> {
        match self.tz.from_local_datetime(&local) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t,
            LocalResult::None => self.after_gap(local),
        }
    }

    fn after_gap(&self, local: NaiveDateTime) -> DateTime<Tz> {
        let minute = local
            .with_second(0)
            .and_then(|t| t.with_nanosecond(0))
            .unwrap_or(local);
        (1..=MAX_GAP_MINUTES)
            .filter_map(|m| minute.checked_add_signed(TimeDelta::minutes(m)))
            .find_map(|probe| self.tz.from_local_datetime(&probe).earliest())
            .unwrap_or_else(|| self.tz.from_utc_datetime(&local))
    }
}

fn clamp(at: i64) -> i64 {
    at.clamp(MIN_TIME, MAX_TIME)
}

fn parse_hours(hours: &str) -> Result<(NaiveTime, NaiveTime), CalendarError> {
    let bad = || CalendarError::Hours(hours.to_owned());
    let (start, end) = hours.split_once('-').ok_or_else(bad)?;
    let time = |s: &str| NaiveTime::parse_from_str(s.trim(), "%H:%M").map_err(|_| bad());
    let (start, end) = (time(start)?, time(end)?);
    if end <= start {
        return Err(bad());
    }
    Ok((start, end))
}

/// Holidays written either as strings ("2025-12-25") or as TOML dates
/// (2025-12-25).
mod holiday_dates {
    use chrono::NaiveDate;
    use serde::{de::Error, Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Text(NaiveDate),
        Toml(toml::value::Datetime),
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<NaiveDate>, D::Error> {
        Vec::<Written>::deserialize(d)?
            .into_iter()
            .map(|w| match w {
                Written::Text(date) => Ok(date),
                Written::Toml(dt) => toml_date(&dt).ok_or_else(|| {
                    D::Error::custom(format!("holiday {dt} is not a plain date like 2025-12-25"))
                }),
            })
            .collect()
    }

    fn toml_date(dt: &toml::value::Datetime) -> Option<NaiveDate> {
        match (dt.date, dt.time, dt.offset) {
            (Some(d), None, None) => {
                NaiveDate::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn berlin() -> Calendar {
        Calendar::from_config(&CalendarConfig {
            time_zone: "Europe/Berlin".into(),
            ..CalendarConfig::default()
        })
        .unwrap()
    }

    fn zone(name: &str) -> Calendar {
        Calendar::from_config(&CalendarConfig {
            time_zone: name.into(),
            ..CalendarConfig::default()
        })
        .unwrap()
    }

    /// Unix seconds of a local time in the calendar's zone (earliest if
    /// ambiguous).
    fn at(cal: &Calendar, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        let naive = NaiveDate::from_ymd_opt(y, mo, d)
            .unwrap()
            .and_hms_opt(h, mi, 0)
            .unwrap();
        cal.tz
            .from_local_datetime(&naive)
            .earliest()
            .unwrap()
            .timestamp()
    }

    fn show(cal: &Calendar, t: i64) -> String {
        cal.local(t).format("%a %Y-%m-%d %H:%M %Z").to_string()
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    // 2025-03-28 is a Friday.

    #[test]
    fn friday_afternoon_plus_two_business_days_is_tuesday_same_time() {
        let cal = Calendar::default();
        let friday = at(&cal, 2025, 3, 14, 16, 0);
        let got = cal.add_business_days(friday, 2);
        assert_eq!(show(&cal, got), "Tue 2025-03-18 16:00 UTC");
    }

    #[test]
    fn a_holiday_in_between_pushes_one_more_day() {
        let cal = Calendar::from_config(&CalendarConfig {
            holidays: vec![date(2025, 3, 17)],
            ..CalendarConfig::default()
        })
        .unwrap();
        let friday = at(&cal, 2025, 3, 14, 16, 0);
        assert_eq!(
            show(&cal, cal.add_business_days(friday, 2)),
            "Wed 2025-03-19 16:00 UTC"
        );
    }

    #[test]
    fn business_days_keep_wall_clock_time_across_a_dst_change() {
        let cal = berlin();
        let friday = at(&cal, 2025, 3, 28, 16, 0);
        assert_eq!(friday, 1_743_174_000);
        let got = cal.add_business_days(friday, 2);
        assert_eq!(got, 1_743_516_000);
        assert_eq!(show(&cal, got), "Tue 2025-04-01 16:00 CEST");
    }

    #[test]
    fn after_hours_mail_counts_from_the_next_opening() {
        let cal = Calendar::default();
        let friday_evening = at(&cal, 2025, 3, 14, 20, 0);
        assert_eq!(
            show(&cal, cal.add_business_days(friday_evening, 1)),
            "Tue 2025-03-18 09:00 UTC"
        );
        let saturday = at(&cal, 2025, 3, 15, 10, 0);
        assert_eq!(
            show(&cal, cal.add_business_days(saturday, 1)),
            "Tue 2025-03-18 09:00 UTC"
        );
        let early_monday = at(&cal, 2025, 3, 17, 7, 0);
        assert_eq!(
            show(&cal, cal.add_business_days(early_monday, 1)),
            "Tue 2025-03-18 09:00 UTC"
        );
    }

    #[test]
    fn zero_business_days_is_the_next_opening() {
        let cal = Calendar::default();
        let inside = at(&cal, 2025, 3, 14, 10, 30);
        assert_eq!(cal.add_business_days(inside, 0), inside);
        let saturday = at(&cal, 2025, 3, 15, 10, 0);
        assert_eq!(
            cal.add_business_days(saturday, 0),
            at(&cal, 2025, 3, 17, 9, 0)
        );
    }

    #[test]
    fn next_open_is_inclusive_at_opening_and_exclusive_at_closing() {
        let cal = Calendar::default();
        let opening = at(&cal, 2025, 3, 14, 9, 0);
        assert_eq!(cal.next_open(opening), opening);
        assert_eq!(cal.next_open(opening - 1), opening);
        let closing = at(&cal, 2025, 3, 14, 17, 0);
        assert_eq!(cal.next_open(closing - 1), closing - 1);
        assert_eq!(cal.next_open(closing), at(&cal, 2025, 3, 17, 9, 0));
        assert!(cal.is_open(closing - 1));
        assert!(!cal.is_open(closing));
    }

    #[test]
    fn business_hours_skip_nights_and_weekends() {
        let cal = Calendar::default();
        let friday = at(&cal, 2025, 3, 14, 15, 0);
        assert_eq!(
            show(&cal, cal.add_business_hours(friday, 4)),
            "Mon 2025-03-17 11:00 UTC"
        );
        let saturday = at(&cal, 2025, 3, 15, 12, 0);
        assert_eq!(
            show(&cal, cal.add_business_hours(saturday, 4)),
            "Mon 2025-03-17 13:00 UTC"
        );
    }

    #[test]
    fn business_hours_may_end_exactly_at_closing() {
        let cal = Calendar::default();
        let one_pm = at(&cal, 2025, 3, 14, 13, 0);
        assert_eq!(
            cal.add_business_hours(one_pm, 4),
            at(&cal, 2025, 3, 14, 17, 0)
        );
    }

    #[test]
    fn zero_business_hours_is_the_input() {
        let cal = Calendar::default();
        let saturday = at(&cal, 2025, 3, 15, 12, 0);
        assert_eq!(cal.add_business_hours(saturday, 0), saturday);
    }

    #[test]
    fn an_opening_time_in_a_dst_gap_opens_when_the_gap_ends() {
        // Berlin jumps from 02:00 to 03:00 on Sunday 2025-03-30.
        let cal = Calendar::from_config(&CalendarConfig {
            time_zone: "Europe/Berlin".into(),
            workdays: vec!["sun".into()],
            hours: "02:30-17:00".into(),
            holidays: vec![],
        })
        .unwrap();
        let saturday = at(&cal, 2025, 3, 29, 12, 0);
        let open = cal.next_open(saturday);
        assert_eq!(show(&cal, open), "Sun 2025-03-30 03:00 CEST");
        assert_eq!(open, 1_743_296_400);
    }

    #[test]
    fn an_ambiguous_opening_time_takes_the_earlier_instant() {
        // New York repeats 01:00-02:00 on Sunday 2025-11-02.
        let cal = Calendar::from_config(&CalendarConfig {
            time_zone: "America/New_York".into(),
            workdays: vec!["sunday".into()],
            hours: "01:30-17:00".into(),
            holidays: vec![],
        })
        .unwrap();
        let saturday = at(&cal, 2025, 11, 1, 12, 0);
        let open = cal.next_open(saturday);
        assert_eq!(show(&cal, open), "Sun 2025-11-02 01:30 EDT");
    }

    #[test]
    fn a_skipped_local_date_is_not_a_business_day() {
        // Samoa skipped Friday 2011-12-30 entirely.
        let cal = Calendar::from_config(&CalendarConfig {
            time_zone: "Pacific/Apia".into(),
            workdays: ["mon", "tue", "wed", "thu", "fri", "sat"]
                .map(String::from)
                .into(),
            ..CalendarConfig::default()
        })
        .unwrap();
        let thursday = at(&cal, 2011, 12, 29, 16, 0);
        let got = cal.add_business_days(thursday, 1);
        assert_eq!(show(&cal, got), "Sat 2011-12-31 16:00 +14");
    }

    #[test]
    fn extreme_inputs_saturate_instead_of_panicking() {
        let cal = berlin();
        assert_eq!(cal.next_open(i64::MAX), MAX_TIME);
        assert!(cal.next_open(i64::MIN) >= MIN_TIME);
        assert_eq!(cal.add_business_days(i64::MAX, u32::MAX), MAX_TIME);
        assert_eq!(cal.add_business_hours(MAX_TIME - 10, 1000), MAX_TIME);
        let _ = cal.local_date(i64::MIN);
    }

    #[test]
    fn config_errors_name_the_bad_value() {
        let bad = |cfg: CalendarConfig| Calendar::from_config(&cfg).unwrap_err().to_string();
        let text = bad(CalendarConfig {
            time_zone: "Mars/Olympus".into(),
            ..CalendarConfig::default()
        });
        assert!(text.contains("Mars/Olympus"), "{text}");
        let text = bad(CalendarConfig {
            workdays: vec!["mon".into(), "funday".into()],
            ..CalendarConfig::default()
        });
        assert!(text.contains("funday"), "{text}");
        let text = bad(CalendarConfig {
            workdays: vec![],
            ..CalendarConfig::default()
        });
        assert!(text.contains("workdays"), "{text}");
        for hours in [
            "17:00-09:00",
            "09:00",
            "9 to 5",
            "09:00-25:00",
            "09:00-09:00",
        ] {
            let text = bad(CalendarConfig {
                hours: hours.into(),
                ..CalendarConfig::default()
            });
            assert!(text.contains(hours), "{text}");
        }
    }

    #[test]
    fn workday_names_may_be_short_long_or_capitalized() {
        let cal = Calendar::from_config(&CalendarConfig {
            workdays: vec!["Monday".into(), "TUE".into(), " sat ".into()],
            ..CalendarConfig::default()
        })
        .unwrap();
        assert_eq!(cal.workdays, [true, true, false, false, false, true, false]);
    }

    #[test]
    fn an_empty_toml_section_gives_the_defaults() {
        let cfg: CalendarConfig = toml::from_str("").unwrap();
        assert_eq!(cfg, CalendarConfig::default());
        assert_eq!(Calendar::from_config(&cfg).unwrap(), Calendar::default());
    }

    #[test]
    fn holidays_read_as_toml_dates_or_strings() {
        let cfg: CalendarConfig = toml::from_str(
            r#"
            time_zone = "Europe/Berlin"
            workdays = ["mon", "tue", "wed", "thu"]
            hours = "08:30-18:00"
            holidays = [2025-12-25, "2025-12-26"]
            "#,
        )
        .unwrap();
        assert_eq!(cfg.holidays, [date(2025, 12, 25), date(2025, 12, 26)]);
        assert!(toml::from_str::<CalendarConfig>("holidays = [2025-12-25T10:00:00]").is_err());
        assert!(toml::from_str::<CalendarConfig>("holiday = []").is_err());
    }

    // ---- properties ----

    const ZONES: [&str; 5] = [
        "UTC",
        "Europe/Berlin",
        "America/New_York",
        "Australia/Sydney",
        "Asia/Kolkata",
    ];

    /// DST switch dates 2024-2026 of the zones above, as UTC midnights.
    fn dst_switches() -> Vec<i64> {
        [
            (2024, 3, 31),
            (2024, 10, 27),
            (2025, 3, 30),
            (2025, 10, 26),
            (2026, 3, 29),
            (2024, 3, 10),
            (2024, 11, 3),
            (2025, 3, 9),
            (2025, 11, 2),
            (2024, 4, 7),
            (2024, 10, 6),
            (2025, 4, 6),
            (2025, 10, 5),
        ]
        .iter()
        .map(|&(y, m, d)| {
            date(y, m, d)
                .and_hms_opt(0, 0, 0)
                .unwrap()
                .and_utc()
                .timestamp()
        })
        .collect()
    }

    fn instant() -> impl Strategy<Value = i64> {
        let uniform = 1_577_836_800i64..1_893_456_000; // 2020..2030
        let near_dst = (
            prop::sample::select(dst_switches()),
            -5 * 86_400i64..5 * 86_400,
        )
            .prop_map(|(base, offset)| base + offset);
        prop_oneof![uniform, near_dst]
    }

    const HOURS: [&str; 6] = [
        "09:00-17:00",
        "08:30-18:15",
        "00:00-23:59",
        "02:30-05:00",
        "01:00-02:30",
        "12:00-12:01",
    ];

    fn calendar() -> impl Strategy<Value = Calendar> {
        (
            prop::sample::select(ZONES.to_vec()),
            1u8..128,
            prop::sample::select(HOURS.to_vec()),
            prop::collection::vec(0i64..40, 0..6),
            instant(),
        )
            .prop_map(|(tz, mask, hours, offsets, base)| {
                let base_date = DateTime::from_timestamp(base, 0).unwrap().date_naive();
                let workdays = std::array::from_fn(|i| mask & (1 << i) != 0);
                let holidays = offsets.iter().map(|&d| base_date + TimeDelta::days(d));
                let (start, end) = parse_hours(hours).unwrap();
                Calendar::new(tz.parse().unwrap(), workdays, start, end, holidays).unwrap()
            })
    }

    /// Checked without `window`: a workday, not a holiday.
    fn on_business_day(cal: &Calendar, t: i64) -> bool {
        let local = cal.local(t);
        cal.workdays[local.weekday().num_days_from_monday() as usize]
            && !cal.holidays.contains(&local.date_naive())
    }

    fn inside_window(cal: &Calendar, t: i64) -> bool {
        cal.window(cal.local_date(t))
            .is_some_and(|(open, close)| open <= t && t < close)
    }

    /// Open seconds in `[from, to)`, summed window by window.
    fn open_seconds(cal: &Calendar, from: i64, to: i64) -> i64 {
        cal.windows_around(from)
            .take_while(|&(open, _)| open < to)
            .map(|(open, close)| (close.min(to) - open.max(from)).max(0))
            .sum()
    }

    proptest! {
        #[test]
        fn business_days_land_inside_business_hours_after_the_input(
            cal in calendar(), t in instant(), n in 1u32..15,
        ) {
            let got = cal.add_business_days(t, n);
            prop_assert!(got > t, "{} + {n} = {}", show(&cal, t), show(&cal, got));
            prop_assert!(on_business_day(&cal, got), "{}", show(&cal, got));
            prop_assert!(inside_window(&cal, got), "{}", show(&cal, got));
        }

        #[test]
        fn business_days_grow_with_n(cal in calendar(), t in instant(), n in 0u32..15) {
            let a = cal.add_business_days(t, n);
            let b = cal.add_business_days(t, n + 1);
            prop_assert!(a < b, "{} + {n} = {}, + {} = {}", show(&cal, t), show(&cal, a), n + 1, show(&cal, b));
        }

        #[test]
        fn business_days_keep_the_wall_clock_time_in_ordinary_hours(
            tz in prop::sample::select(ZONES.to_vec()), t in instant(), n in 1u32..15,
        ) {
            let cal = zone(tz);
            let start = cal.local(cal.next_open(t));
            let got = cal.local(cal.add_business_days(t, n));
            prop_assert_eq!(got.time(), start.time());
            let hours = cal.hours();
            prop_assert!(hours.0 <= got.time() && got.time() < hours.1);
            prop_assert!(got.weekday().num_days_from_monday() < 5);
        }

        #[test]
        fn next_open_is_open_and_nothing_opens_earlier(cal in calendar(), t in instant()) {
            let got = cal.next_open(t);
            prop_assert!(got >= t);
            prop_assert!(inside_window(&cal, got), "{}", show(&cal, got));
            prop_assert!(on_business_day(&cal, got));
            prop_assert_eq!(open_seconds(&cal, t, got), 0);
        }

        #[test]
        fn business_hours_count_exactly_the_open_time(
            cal in calendar(), t in instant(), h in 0u32..100,
        ) {
            let got = cal.add_business_hours(t, h);
            prop_assert!(got >= t);
            prop_assert_eq!(open_seconds(&cal, t, got), i64::from(h) * 3600);
            if h > 0 {
                prop_assert!(got > t);
                prop_assert!(cal.is_open(got - 1), "{}", show(&cal, got));
            }
        }

        #[test]
        fn business_hours_grow_with_hours(cal in calendar(), t in instant(), h in 0u32..100) {
            prop_assert!(cal.add_business_hours(t, h) < cal.add_business_hours(t, h + 1));
        }
    }
}
