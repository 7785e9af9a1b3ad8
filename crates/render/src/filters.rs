//! Filters for mail: `money`.

use minijinja::{Environment, Error, ErrorKind};

pub fn register(env: &mut Environment<'static>) {
    env.add_filter("money", money);
}

/// `{{ 1234.5 | money("EUR", "de") }}` → `1.234,50 €`; `{{ 1234.5 | money }}`
/// → `$1,234.50`. Amounts are numbers in the currency's main unit.
/// Locales: `en` (default) and `de`/`fr`/`es`/`it`/`nl` (comma decimals,
/// symbol after).
fn money(amount: f64, currency: Option<String>, locale: Option<String>) -> Result<String, Error> {
    if !amount.is_finite() {
        return Err(Error::new(ErrorKind::InvalidOperation, "money: the amount is not a number"));
    }
    let currency = currency.unwrap_or_else(|| "USD".into()).to_ascii_uppercase();
    let locale = locale.unwrap_or_else(|| "en".into()).to_ascii_lowercase();
    let decimals = if matches!(currency.as_str(), "JPY" | "KRW" | "ISK") { 0 } else { 2 };
    let comma_decimals = matches!(locale.get(..2), Some("de" | "fr" | "es" | "it" | "nl" | "pt"));
    let (group, point) = if comma_decimals { ('.', ',') } else { (',', '.') };
    let negative = amount < 0.0;
    // Whole minor units as an integer: exact for any price a mail shows,
    // and much cheaper than formatting the float.
    let scale = if decimals == 0 { 1.0 } else { 100.0 };
    let minor = (amount.abs() * scale).round();
    if minor >= 1e17 {
        return Err(Error::new(ErrorKind::InvalidOperation, "money: the amount is too large"));
    }
    let minor = minor as u64;
    let (whole, frac) = if decimals == 0 { (minor, 0) } else { (minor / 100, minor % 100) };
    let int = whole.to_string();
    let mut number = String::with_capacity(int.len() + int.len() / 3 + 4);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            number.push(group);
        }
        number.push(c);
    }
    if decimals > 0 {
        number.push(point);
        number.push(char::from(b'0' + (frac / 10) as u8));
        number.push(char::from(b'0' + (frac % 10) as u8));
    }
    let symbol = match currency.as_str() {
        "USD" => "$",
        "EUR" => "€",
        "GBP" => "£",
        "JPY" => "¥",
        _ => "",
    };
    let body = match (symbol, comma_decimals) {
        ("", _) => format!("{number} {currency}"),
        (s, true) => format!("{number} {s}"),
        (s, false) => format!("{s}{number}"),
    };
    Ok(if negative { format!("-{body}") } else { body })
}

#[cfg(test)]
mod tests {
    use super::money;

    #[test]
    fn money_formats() {
        let m = |a: f64, c: Option<&str>, l: Option<&str>| money(a, c.map(Into::into), l.map(Into::into)).unwrap();
        assert_eq!(m(1234.5, None, None), "$1,234.50");
        assert_eq!(m(1234.5, Some("eur"), Some("de")), "1.234,50 €");
        assert_eq!(m(1234567.0, Some("JPY"), None), "¥1,234,567");
        assert_eq!(m(12.0, Some("CHF"), None), "12.00 CHF");
        assert_eq!(m(-5.25, Some("GBP"), None), "-£5.25");
        assert_eq!(m(0.0, None, None), "$0.00");
        assert_eq!(m(0.005, None, None), "$0.01");
        assert_eq!(m(19.999, None, None), "$20.00");
        assert!(money(f64::NAN, None, None).is_err());
        assert!(money(1e30, None, None).is_err());
    }
}
