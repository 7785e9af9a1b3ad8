//! Schedules in cron syntax, in a time zone: when a digest goes out.
//!
//! Five fields as in crontab (`minute hour day-of-month month
//! day-of-week`, days of the week 0–7 with 0 and 7 Sunday, or `Mon`…),
//! or `@daily`, `@weekly`, `@hourly`, `@monthly`. jiff-cron does the
//! matching and jiff the time zones (daylight saving included); this
//! module only maps crontab's day numbers onto jiff-cron's.

use std::str::FromStr;

use jiff::tz::TimeZone;

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Cron {
    schedule: jiff_cron::Schedule,
}

const DAYS: [&str; 8] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// One day-of-week item (`1`, `1-5`, `*/2`, `5-7`) with names for numbers.
fn day_names(item: &str) -> Result<String, String> {
    let (range, step) = match item.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (item, None),
    };
    let name = |d: &str| -> Result<&'static str, String> {
        match d.parse::<usize>() {
            Ok(n) if n <= 7 => Ok(DAYS[n]),
            Ok(_) => Err(format!("day of the week `{d}` is not 0–7 (0 and 7 are Sunday)")),
            Err(_) => Err(String::new()),
        }
    };
    let named = match range.split_once('-') {
        Some((a, b)) => match (name(a), name(b)) {
            (Ok("Sun"), Ok("Sun")) if a == "0" && b == "7" => "Sun-Sat".to_string(),
            (Ok(x), Ok("Sun")) if b == "7" && x != "Sun" => format!("{x}-Sat,Sun"),
            (Ok(x), Ok(y)) => format!("{x}-{y}"),
            (Err(e), _) | (_, Err(e)) if !e.is_empty() => return Err(e),
            _ => range.to_string(),
        },
        None => match name(range) {
            Ok(x) => x.to_string(),
            Err(e) if !e.is_empty() => return Err(e),
            Err(_) => range.to_string(),
        },
    };
    if named.contains(',') && step.is_some() {
        return Err(format!("`{item}`: a step over a range ending on Sunday (7) is not supported; write it out"));
    }
    Ok(match step {
        Some(s) => format!("{named}/{s}"),
        None => named,
    })
}

impl Cron {
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let expr = if t.starts_with('@') {
            t.to_string()
        } else {
            let fields: Vec<&str> = t.split_whitespace().collect();
            if fields.len() != 5 {
                return Err(format!(
                    "`{t}` is not a schedule: give five fields, minute hour day-of-month month day-of-week \
                     (`0 8 * * 1-5` is 08:00 on weekdays), or @daily, @weekly"
                ));
            }
            if fields[2] != "*" && fields[2] != "?" && fields[4] != "*" && fields[4] != "?" {
                return Err(format!(
                    "`{t}` restricts both the day of the month and the day of the week; crontab would fire on \
                     either, which is not supported: use `*` for one of them (two rules give both)"
                ));
            }
            let days = fields[4].split(',').map(day_names).collect::<Result<Vec<_>, _>>()?.join(",");
            format!("0 {} {} {} {} {days}", fields[0], fields[1], fields[2], fields[3])
        };
        let schedule = jiff_cron::Schedule::from_str(&expr).map_err(|e| format!("`{t}` is not a schedule: {e}"))?;
        if schedule.upcoming(TimeZone::UTC).next().is_none() {
            return Err(format!("`{t}` never fires (a day that does not exist?)"));
        }
        Ok(Self { schedule })
    }

    /// The first time after `after_ms` (Unix milliseconds) the schedule
    /// fires in `tz`.
    pub fn next_after(&self, after_ms: i64, tz: &TimeZone) -> Result<i64, String> {
        let ts = jiff::Timestamp::from_millisecond(after_ms).map_err(|e| e.to_string())?;
        let next = self
            .schedule
            .after(ts.to_zoned(tz.clone()))
            .next()
            .ok_or_else(|| "the schedule never fires again".to_string())?;
        Ok(next.timestamp().as_millisecond())
    }
}

/// A time zone by its IANA name (`Europe/Berlin`, `America/New_York`, `UTC`).
pub fn time_zone(name: &str) -> Result<TimeZone, String> {
    TimeZone::get(name.trim())
        .map_err(|_| format!("`{name}` is not a time zone; use an IANA name such as Europe/Berlin or UTC"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn daily_in_the_recipients_zone() {
        let c = Cron::parse("0 8 * * *").unwrap();
        let ny = time_zone("America/New_York").unwrap();
        let berlin = time_zone("Europe/Berlin").unwrap();
        // 2027-01-15 08:00 UTC: 03:00 in New York, 09:00 in Berlin.
        let now = at("2027-01-15T08:00:00Z");
        assert_eq!(c.next_after(now, &ny).unwrap(), at("2027-01-15T13:00:00Z"));
        assert_eq!(c.next_after(now, &berlin).unwrap(), at("2027-01-16T07:00:00Z"));
        // Across the change to summer time New York's 08:00 moves to 12:00 UTC.
        assert_eq!(c.next_after(at("2027-03-14T13:00:00Z"), &ny).unwrap(), at("2027-03-15T12:00:00Z"));
    }

    #[test]
    fn crontab_day_numbers() {
        let weekdays = Cron::parse("30 9 * * 1-5").unwrap();
        let utc = time_zone("UTC").unwrap();
        // 2027-01-15 is a Friday: the next weekday 09:30 after Friday noon is Monday.
        assert_eq!(weekdays.next_after(at("2027-01-15T12:00:00Z"), &utc).unwrap(), at("2027-01-18T09:30:00Z"));
        let sunday = Cron::parse("0 18 * * 0").unwrap();
        assert_eq!(sunday.next_after(at("2027-01-15T12:00:00Z"), &utc).unwrap(), at("2027-01-17T18:00:00Z"));
        let seven = Cron::parse("0 18 * * 7").unwrap();
        assert_eq!(seven.next_after(at("2027-01-15T12:00:00Z"), &utc).unwrap(), at("2027-01-17T18:00:00Z"));
        let weekend = Cron::parse("0 10 * * 6-7").unwrap();
        assert_eq!(weekend.next_after(at("2027-01-16T12:00:00Z"), &utc).unwrap(), at("2027-01-17T10:00:00Z"));
        let named = Cron::parse("0 7 * * Mon,Thu").unwrap();
        assert_eq!(named.next_after(at("2027-01-15T12:00:00Z"), &utc).unwrap(), at("2027-01-18T07:00:00Z"));
        assert!(Cron::parse("@daily").is_ok());
        let every = Cron::parse("0 6 * * 0-7").unwrap();
        assert_eq!(every.next_after(at("2027-01-15T12:00:00Z"), &utc).unwrap(), at("2027-01-16T06:00:00Z"));
    }

    #[test]
    fn bad_schedules_say_why() {
        assert!(Cron::parse("0 8 * *").unwrap_err().contains("five fields"));
        assert!(Cron::parse("0 8 * * 9").unwrap_err().contains("0–7"));
        assert!(Cron::parse("0 25 * * *").is_err());
        assert!(Cron::parse("every day").is_err());
        assert!(time_zone("Mars/Olympus").unwrap_err().contains("IANA"));
        assert!(Cron::parse("0 8 30 2 *").unwrap_err().contains("never fires"));
        assert!(Cron::parse("0 9 1 * 1").unwrap_err().contains("both"));
    }
}
