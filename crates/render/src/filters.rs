//! Filters for mail: `money` and `datetime`.

use minijinja::{Environment, Error, ErrorKind, Value};

pub fn register(env: &mut Environment<'static>) {
    env.add_filter("money", money);
    env.add_filter("datetime", datetime);
}

const MONTHS: &[(&str, [&str; 12])] = &[
    (
        "en",
        [
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ],
    ),
    (
        "de",
        [
            "Januar",
            "Februar",
            "März",
            "April",
            "Mai",
            "Juni",
            "Juli",
            "August",
            "September",
            "Oktober",
            "November",
            "Dezember",
        ],
    ),
    (
        "fr",
        [
            "janvier",
            "février",
            "mars",
            "avril",
            "mai",
            "juin",
            "juillet",
            "août",
            "septembre",
            "octobre",
            "novembre",
            "décembre",
        ],
    ),
    (
        "es",
        [
            "enero",
            "febrero",
            "marzo",
            "abril",
            "mayo",
            "junio",
            "julio",
            "agosto",
            "septiembre",
            "octubre",
            "noviembre",
            "diciembre",
        ],
    ),
    (
        "it",
        [
            "gennaio",
            "febbraio",
            "marzo",
            "aprile",
            "maggio",
            "giugno",
            "luglio",
            "agosto",
            "settembre",
            "ottobre",
            "novembre",
            "dicembre",
        ],
    ),
    (
        "nl",
        [
            "januari",
            "februari",
            "maart",
            "april",
            "mei",
            "juni",
            "juli",
            "augustus",
            "september",
            "oktober",
            "november",
            "december",
        ],
    ),
    (
        "pt",
        [
            "janeiro",
            "fevereiro",
            "março",
            "abril",
            "maio",
            "junho",
            "julho",
            "agosto",
            "setembro",
            "outubro",
            "novembro",
            "dezembro",
        ],
    ),
];

/// Monday first.
const WEEKDAYS: &[(&str, [&str; 7])] = &[
    ("en", ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]),
    ("de", ["Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"]),
    ("fr", ["lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"]),
    ("es", ["lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"]),
    ("it", ["lunedì", "martedì", "mercoledì", "giovedì", "venerdì", "sabato", "domenica"]),
    ("nl", ["maandag", "dinsdag", "woensdag", "donderdag", "vrijdag", "zaterdag", "zondag"]),
    ("pt", ["segunda-feira", "terça-feira", "quarta-feira", "quinta-feira", "sexta-feira", "sábado", "domingo"]),
];

fn invalid(msg: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg)
}

/// `{{ appointment.start | datetime("long", "Europe/Berlin", "de") }}` →
/// `Dienstag, 2. März 2027, 10:00`. The value is RFC 3339 text or Unix
/// seconds; the zone an IANA name (default UTC); the style `short`,
/// `medium` (default), `long`, `date` or `time`; the locale `en` (default),
/// `en-us` (12-hour clock), `de`, `fr`, `es`, `it`, `nl` or `pt`.
fn datetime(
    value: minijinja::Value,
    style: Option<String>,
    zone: Option<String>,
    locale: Option<String>,
) -> Result<String, Error> {
    let ts = if let Some(secs) = value.as_i64() {
        jiff::Timestamp::from_second(secs).map_err(|e| invalid(format!("datetime: {e}")))?
    } else if let Some(s) = value.as_str() {
        s.parse::<jiff::Timestamp>()
            .map_err(|_| invalid(format!("datetime: `{s}` is not a time such as 2027-03-02T10:00:00Z")))?
    } else {
        return Err(invalid("datetime: give an RFC 3339 time or Unix seconds".into()));
    };
    let zone = zone.unwrap_or_else(|| "UTC".into());
    let tz = jiff::tz::TimeZone::get(&zone).map_err(|_| invalid(format!("datetime: unknown time zone `{zone}`")))?;
    let z = ts.to_zoned(tz);
    let locale = locale.unwrap_or_else(|| "en".into()).to_ascii_lowercase();
    let lang = locale.get(..2).unwrap_or("en");
    let month_names = MONTHS.iter().find(|(l, _)| *l == lang).map(|(_, m)| m).unwrap_or(&MONTHS[0].1);
    let day_names = WEEKDAYS.iter().find(|(l, _)| *l == lang).map(|(_, d)| d).unwrap_or(&WEEKDAYS[0].1);
    let month = month_names[(z.month() - 1) as usize];
    let weekday = day_names[z.weekday().to_monday_zero_offset() as usize];
    let short = |s: &str| s.chars().take(3).collect::<String>();
    let (d, y) = (z.day(), z.year());
    let time = if locale == "en-us" {
        let h = z.hour() % 12;
        format!("{}:{:02} {}", if h == 0 { 12 } else { h }, z.minute(), if z.hour() < 12 { "AM" } else { "PM" })
    } else {
        format!("{:02}:{:02}", z.hour(), z.minute())
    };
    let day_month = match lang {
        "de" => format!("{d}. {month}"),
        "en" if locale == "en-us" => format!("{month} {d}"),
        "en" => format!("{d} {month}"),
        _ => format!("{d} {month}"),
    };
    let day_month_short = match lang {
        "de" => format!("{d}. {}", short(month)),
        "en" if locale == "en-us" => format!("{} {d}", short(month)),
        _ => format!("{d} {}", short(month)),
    };
    Ok(match style.as_deref().unwrap_or("medium") {
        "short" => format!("{day_month_short} {y}, {time}"),
        "medium" => format!("{} {day_month_short} {y}, {time}", short(weekday)),
        "long" => format!("{weekday}, {day_month} {y}, {time}"),
        "date" => format!("{day_month} {y}"),
        "time" => time,
        other => {
            return Err(invalid(format!("datetime: unknown style `{other}`: use short, medium, long, date or time")));
        }
    })
}

/// `{{ 1234.5 | money("EUR", "de") }}` → `1.234,50 €`; `{{ 1234.5 | money }}`
/// → `$1,234.50`. Amounts are numbers in the currency's main unit.
/// Locales: `en` (default) and `de`/`fr`/`es`/`it`/`nl` (comma decimals,
/// symbol after).
fn money(amount: f64, currency: Option<&str>, locale: Option<&str>) -> Result<Value, Error> {
    if !amount.is_finite() {
        return Err(Error::new(ErrorKind::InvalidOperation, "money: the amount is not a number"));
    }
    // Called for every price of every line: no allocation but the result's.
    let currency = currency.unwrap_or("USD");
    let is = |code: &str| currency.eq_ignore_ascii_case(code);
    let decimals = if is("JPY") || is("KRW") || is("ISK") { 0 } else { 2 };
    let lang = locale.unwrap_or("en").get(..2).unwrap_or("");
    let comma_decimals = ["de", "fr", "es", "it", "nl", "pt"].iter().any(|l| lang.eq_ignore_ascii_case(l));
    let (group, point) = if comma_decimals { ('.', ',') } else { (',', '.') };
    // Whole minor units as an integer: exact for any price a mail shows,
    // and much cheaper than formatting the float.
    let scale = if decimals == 0 { 1.0 } else { 100.0 };
    let minor = (amount.abs() * scale).round();
    if minor >= 1e17 {
        return Err(Error::new(ErrorKind::InvalidOperation, "money: the amount is too large"));
    }
    let minor = minor as u64;
    let (whole, frac) = if decimals == 0 { (minor, 0) } else { (minor / 100, minor % 100) };
    let symbol = if is("USD") {
        "$"
    } else if is("EUR") {
        "€"
    } else if is("GBP") {
        "£"
    } else if is("JPY") {
        "¥"
    } else {
        ""
    };
    let mut out = String::with_capacity(32 + currency.len());
    if amount < 0.0 && minor > 0 {
        out.push('-');
    }
    if !symbol.is_empty() && !comma_decimals {
        out.push_str(symbol);
    }
    let mut digits = [0u8; 20];
    let mut n = whole;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in (0..len).rev() {
        out.push(char::from(digits[i]));
        if i > 0 && i % 3 == 0 {
            out.push(group);
        }
    }
    if decimals > 0 {
        out.push(point);
        out.push(char::from(b'0' + (frac / 10) as u8));
        out.push(char::from(b'0' + (frac % 10) as u8));
    }
    if symbol.is_empty() {
        out.push(' ');
        out.extend(currency.chars().map(|c| c.to_ascii_uppercase()));
    } else if comma_decimals {
        out.push(' ');
        out.push_str(symbol);
    }
    // Short results live inside the value itself.
    Ok(Value::from(out.as_str()))
}

#[cfg(test)]
mod tests {
    use super::{datetime, money};

    #[test]
    fn datetimes_in_zones_and_languages() {
        let dt = |v: minijinja::Value, s: &str, z: &str, l: &str| {
            datetime(v, Some(s.into()), Some(z.into()), Some(l.into())).unwrap()
        };
        let t = minijinja::Value::from("2027-03-02T09:00:00Z");
        assert_eq!(dt(t.clone(), "long", "Europe/Berlin", "de"), "Dienstag, 2. März 2027, 10:00");
        assert_eq!(dt(t.clone(), "medium", "America/New_York", "en-us"), "Tue Mar 2 2027, 4:00 AM");
        assert_eq!(dt(t.clone(), "date", "Europe/Paris", "fr"), "2 mars 2027");
        assert_eq!(dt(t.clone(), "time", "Asia/Tokyo", "en"), "18:00");
        assert_eq!(dt(minijinja::Value::from(1_800_000_000), "short", "UTC", "en"), "15 Jan 2027, 08:00");
        // Summer time: the same wall clock is another offset.
        assert_eq!(dt(minijinja::Value::from("2027-07-02T09:00:00Z"), "time", "Europe/Berlin", "de"), "11:00");
        assert!(datetime(minijinja::Value::from("soon"), None, None, None).is_err());
        assert!(datetime(t.clone(), None, Some("Nowhere/Land".into()), None).is_err());
        assert!(datetime(t, Some("fancy".into()), None, None).is_err());
    }

    #[test]
    fn money_formats() {
        let m = |a: f64, c: Option<&str>, l: Option<&str>| money(a, c, l).unwrap().to_string();
        assert_eq!(m(1234.5, None, None), "$1,234.50");
        assert_eq!(m(1234.5, Some("eur"), Some("de")), "1.234,50 €");
        assert_eq!(m(1234567.0, Some("JPY"), None), "¥1,234,567");
        assert_eq!(m(12.0, Some("CHF"), None), "12.00 CHF");
        assert_eq!(m(-5.25, Some("GBP"), None), "-£5.25");
        assert_eq!(m(0.0, None, None), "$0.00");
        assert_eq!(m(0.005, None, None), "$0.01");
        assert_eq!(m(-0.001, None, None), "$0.00");
        assert_eq!(m(999.999, Some("usd"), Some("EN")), "$1,000.00");
        assert_eq!(m(1234567.891, Some("chf"), Some("de-CH")), "1.234.567,89 CHF");
        assert_eq!(m(100.0, Some("eur"), Some("fr")), "100,00 €");
        assert_eq!(m(19.999, None, None), "$20.00");
        assert!(money(f64::NAN, None, None).is_err());
        assert!(money(1e30, None, None).is_err());
    }
}
