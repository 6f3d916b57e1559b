//! `year()`, `month()`, `hour()` and the other calendar functions, in UTC.

/// A calendar function of a Unix time in whole seconds.
pub(super) type DateFn = fn(i64) -> f64;

/// The civil date (year, month 1-12, day 1-31) of a day count since 1970-01-01, by Howard
/// Hinnant's `civil_from_days` algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn date(secs: i64) -> (i64, u32, u32) {
    civil_from_days(secs.div_euclid(86_400))
}

pub(super) fn date_function(name: &str) -> Option<DateFn> {
    Some(match name {
        "year" => |s| date(s).0 as f64,
        "month" => |s| date(s).1 as f64,
        "day_of_month" => |s| date(s).2 as f64,
        "days_in_month" => |s| {
            let (y, m, _) = date(s);
            days_in_month(y, m) as f64
        },
        "day_of_year" => |s| {
            let (y, m, d) = date(s);
            ((1..m).map(|mm| days_in_month(y, mm)).sum::<u32>() + d) as f64
        },
        // 1970-01-01 was a Thursday (4; Sunday is 0).
        "day_of_week" => |s| (s.div_euclid(86_400) + 4).rem_euclid(7) as f64,
        "hour" => |s| (s.rem_euclid(86_400) / 3600) as f64,
        "minute" => |s| (s.rem_euclid(3600) / 60) as f64,
        _ => return None,
    })
}

/// Applies a calendar function to a sample value holding Unix seconds (truncated towards
/// zero as Go's conversion does); NaN for values that are no time.
pub(super) fn of_value(f: DateFn, v: f64) -> f64 {
    if !v.is_finite() || v.abs() > 1e15 {
        return f64::NAN;
    }
    f(v.trunc() as i64)
}
