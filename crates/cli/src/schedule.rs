//! EventBridge schedule expressions: `cron(min hour day-of-month month day-of-week year)` and
//! `rate(value unit)`, with EventBridge's own rules (not Unix cron's).
//!
//! The cron evaluation itself is croner's (it knows `L`, `W`, `#` and years); this module only
//! maps EventBridge's dialect onto it: six fields plus an implicit second 0, day-of-week 1-7 =
//! SUN-SAT (Quartz numbering), and exactly one of day-of-month / day-of-week is `?`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A parsed `schedule_expression`.
#[derive(Debug, Clone)]
pub enum Schedule {
    Cron {
        expression: String,
        cron: Box<Cron>,
    },
    /// A fixed interval. EventBridge counts it from when the rule was created, which the
    /// expression does not say, so fire times are shown from the given start.
    Rate {
        expression: String,
        every: TimeDelta,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid schedule expression {expression:?}: {reason}")]
pub struct ScheduleError {
    pub expression: String,
    pub reason: String,
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(expression: &str) -> Result<Self, Self::Err> {
        let error = |reason: String| ScheduleError { expression: expression.to_owned(), reason };
        let trimmed = expression.trim();
        if let Some(body) = trimmed.strip_prefix("cron(").and_then(|rest| rest.strip_suffix(')')) {
            let cron = parse_cron(body).map_err(error)?;
            Ok(Schedule::Cron { expression: trimmed.to_owned(), cron: Box::new(cron) })
        } else if let Some(body) = trimmed.strip_prefix("rate(").and_then(|rest| rest.strip_suffix(')')) {
            let every = parse_rate(body).map_err(error)?;
            Ok(Schedule::Rate { expression: trimmed.to_owned(), every })
        } else {
            Err(error("must be cron(...) or rate(...)".to_owned()))
        }
    }
}

fn parse_cron(body: &str) -> Result<Cron, String> {
    let fields: Vec<&str> = body.split_whitespace().collect();
    let [minutes, hours, day_of_month, month, day_of_week, year] = fields[..] else {
        return Err(format!(
            "cron needs 6 fields (minutes hours day-of-month month day-of-week year), got {}",
            fields.len()
        ));
    };
    // EventBridge refuses a rule that constrains both days, or neither.
    match (day_of_month == "?", day_of_week == "?") {
        (true, true) => return Err("only one of day-of-month and day-of-week may be `?`".to_owned()),
        (false, false) => {
            return Err("one of day-of-month and day-of-week must be `?` (EventBridge cannot combine them)".to_owned());
        }
        _ => {}
    }
    for (name, field) in [("minutes", minutes), ("hours", hours), ("month", month), ("year", year)] {
        if field.contains('?') || field.contains('L') || field.contains('W') || field.contains('#') {
            return Err(format!("`{field}` is not allowed in the {name} field"));
        }
    }
    if day_of_month.contains('#') {
        return Err("`#` belongs in the day-of-week field".to_owned());
    }
    if day_of_week.contains('W') {
        return Err("`W` belongs in the day-of-month field".to_owned());
    }
    // croner wants `*` where EventBridge writes `?`.
    let wildcard = |field: &str| if field == "?" { "*".to_owned() } else { field.to_owned() };
    let pattern = format!("0 {minutes} {hours} {} {month} {} {year}", wildcard(day_of_month), wildcard(day_of_week));
    CronParser::builder()
        .seconds(Seconds::Required)
        .year(Year::Required)
        .alternative_weekdays(true)
        .build()
        .parse(&pattern)
        .map_err(|e| e.to_string())
}

fn parse_rate(body: &str) -> Result<TimeDelta, String> {
    let mut parts = body.split_whitespace();
    let (Some(value), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err("rate needs a value and a unit, e.g. rate(5 minutes)".to_owned());
    };
    let value: i64 =
        value.parse().ok().filter(|v| *v > 0).ok_or_else(|| format!("`{value}` is not a positive integer"))?;
    // EventBridge insists on the singular for 1 and the plural otherwise.
    let (singular, plural) = match unit {
        "minute" | "minutes" => ("minute", "minutes"),
        "hour" | "hours" => ("hour", "hours"),
        "day" | "days" => ("day", "days"),
        other => return Err(format!("unknown unit `{other}` (minute(s), hour(s) or day(s))")),
    };
    let expected = if value == 1 { singular } else { plural };
    if unit != expected {
        return Err(format!("write `{value} {expected}`"));
    }
    let every = match singular {
        "minute" => TimeDelta::try_minutes(value),
        "hour" => TimeDelta::try_hours(value),
        _ => TimeDelta::try_days(value),
    };
    every.ok_or_else(|| format!("`{value} {unit}` is too long"))
}

impl Schedule {
    pub fn expression(&self) -> &str {
        match self {
            Schedule::Cron { expression, .. } | Schedule::Rate { expression, .. } => expression,
        }
    }

    /// The next `count` fire times strictly after `after`, in `after`'s time zone. EventBridge
    /// evaluates cron expressions in UTC, so the search runs in UTC and only the display moves.
    pub fn next_after<Tz: TimeZone>(&self, after: &DateTime<Tz>, count: usize) -> Vec<DateTime<Tz>> {
        let zone = after.timezone();
        let start = after.with_timezone(&Utc);
        match self {
            Schedule::Cron { cron, .. } => {
                cron.iter_after(start).take(count).map(|time| time.with_timezone(&zone)).collect()
            }
            Schedule::Rate { every, .. } => (1..=count)
                .filter_map(|n| i32::try_from(n).ok().and_then(|n| every.checked_mul(n)))
                .filter_map(|offset| start.checked_add_signed(offset))
                .map(|time| time.with_timezone(&zone))
                .collect(),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expression())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn next(expression: &str, after: &str, count: usize) -> Vec<String> {
        let schedule: Schedule = expression.parse().unwrap();
        schedule.next_after(&at(after), count).iter().map(|t| t.format("%Y-%m-%d %a %H:%M").to_string()).collect()
    }

    // Examples from the EventBridge user guide ("Cron expressions" table), checked by hand
    // against a calendar. 2026-11-29 is a Sunday.
    #[test]
    fn daily_at_ten_utc() {
        assert_eq!(
            next("cron(0 10 * * ? *)", "2026-11-29T12:00:00Z", 2),
            ["2026-11-30 Mon 10:00", "2026-12-01 Tue 10:00"]
        );
    }

    #[test]
    fn weekdays_at_six_pm() {
        assert_eq!(
            next("cron(0 18 ? * MON-FRI *)", "2026-11-27T19:00:00Z", 2),
            ["2026-11-30 Mon 18:00", "2026-12-01 Tue 18:00"]
        );
    }

    #[test]
    fn first_day_of_month_at_eight() {
        assert_eq!(
            next("cron(0 8 1 * ? *)", "2026-11-29T00:00:00Z", 2),
            ["2026-12-01 Tue 08:00", "2027-01-01 Fri 08:00"]
        );
    }

    #[test]
    fn every_ten_minutes_on_weekdays() {
        assert_eq!(
            next("cron(0/10 * ? * MON-FRI *)", "2026-11-27T23:45:00Z", 3),
            ["2026-11-27 Fri 23:50", "2026-11-30 Mon 00:00", "2026-11-30 Mon 00:10"]
        );
    }

    #[test]
    fn every_five_minutes_in_office_hours() {
        assert_eq!(
            next("cron(0/5 8-17 ? * MON-FRI *)", "2026-11-30T17:54:00Z", 2),
            ["2026-11-30 Mon 17:55", "2026-12-01 Tue 08:00"]
        );
    }

    #[test]
    fn seed_readme_saturday_waves_use_sunday_one_numbering() {
        assert_eq!(next("cron(0 3 ? * SAT *)", "2026-11-29T00:00:00Z", 1), ["2026-12-05 Sat 03:00"]);
        // Numeric day-of-week is 1 = Sunday, so 7 is Saturday (Unix cron would say Sunday).
        assert_eq!(next("cron(0 3 ? * 7 *)", "2026-11-29T00:00:00Z", 1), ["2026-12-05 Sat 03:00"]);
    }

    #[test]
    fn nth_weekday_last_day_and_nearest_weekday() {
        // 2#1: the first Monday of the month.
        assert_eq!(
            next("cron(0 9 ? * 2#1 *)", "2026-11-29T00:00:00Z", 2),
            ["2026-12-07 Mon 09:00", "2027-01-04 Mon 09:00"]
        );
        // L in day-of-month: the last day of the month.
        assert_eq!(
            next("cron(0 12 L * ? *)", "2026-11-29T00:00:00Z", 2),
            ["2026-11-30 Mon 12:00", "2026-12-31 Thu 12:00"]
        );
        // 6L: the last Friday of the month.
        assert_eq!(
            next("cron(0 3 ? * 6L *)", "2026-11-29T00:00:00Z", 2),
            ["2026-12-25 Fri 03:00", "2027-01-29 Fri 03:00"]
        );
        // 15W: the weekday nearest the 15th (2027-05-15 is a Saturday -> Friday the 14th).
        assert_eq!(next("cron(0 9 15W 5 ? *)", "2026-11-29T00:00:00Z", 1), ["2027-05-14 Fri 09:00"]);
    }

    #[test]
    fn year_field_limits_the_schedule() {
        assert_eq!(next("cron(0 3 ? * SAT 2026)", "2026-12-20T00:00:00Z", 5), ["2026-12-26 Sat 03:00"]);
    }

    #[test]
    fn rates() {
        assert_eq!(next("rate(1 hour)", "2026-11-29T10:30:00Z", 2), ["2026-11-29 Sun 11:30", "2026-11-29 Sun 12:30"]);
        assert_eq!(next("rate(15 minutes)", "2026-11-29T10:30:00Z", 1), ["2026-11-29 Sun 10:45"]);
    }

    #[test]
    fn time_zone_changes_display_not_instants() {
        let schedule: Schedule = "cron(0 3 ? * SAT *)".parse().unwrap();
        let paris = at("2026-11-29T00:00:00Z").with_timezone(&chrono_tz::Europe::Paris);
        let times = schedule.next_after(&paris, 1);
        assert_eq!(times[0].format("%Y-%m-%d %H:%M %Z").to_string(), "2026-12-05 04:00 CET");
    }

    #[test]
    fn invalid_expressions_say_why() {
        let reason = |e: &str| e.parse::<Schedule>().unwrap_err().reason;
        assert!(reason("cron(0 3 * * SAT *)").contains("must be `?`"));
        assert!(reason("cron(0 3 ? * ? *)").contains("only one"));
        assert!(reason("cron(0 3 * * ?)").contains("6 fields"));
        assert!("cron(61 3 ? * SAT *)".parse::<Schedule>().is_err());
        assert!(reason("rate(1 hours)").contains("1 hour"));
        assert!(reason("rate(5 minute)").contains("5 minutes"));
        assert!(reason("rate(0 minutes)").contains("positive"));
        assert!(reason("rate(5 weeks)").contains("unknown unit"));
        assert!(reason("at(2026-01-01T00:00:00)").contains("cron(...) or rate(...)"));
    }
}
