//! `strftime_now(format)`, the global transformers gives templates (Llama 3 prints today's
//! date with it). Python calls `datetime.now().strftime(format)`: a naive local time. Servers
//! run in UTC containers, so UTC is used; `%Z`/`%z` are empty as for a naive datetime.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
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
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CivilTime {
    pub year: i64,
    /// 1..=12
    pub month: u32,
    /// 1..=31
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 0 = Monday
    pub weekday: u32,
    /// 1..=366
    pub yearday: u32,
}

impl CivilTime {
    /// Converts seconds since the Unix epoch (Howard Hinnant's `civil_from_days`).
    pub fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        const CUMULATIVE: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let yearday = CUMULATIVE[(month - 1) as usize] + day + u32::from(leap && month > 2);
        // 1970-01-01 was a Thursday (Monday = 0 -> Thursday = 3).
        let weekday = (days + 3).rem_euclid(7) as u32;
        CivilTime {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem / 60 % 60) as u32,
            second: (rem % 60) as u32,
            weekday,
            yearday,
        }
    }

    /// The current UTC time.
    pub fn now() -> Self {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Self::from_unix(secs)
    }

    /// C/Python `strftime` for the directives templates use; unknown directives are kept
    /// verbatim, as glibc does.
    pub fn strftime(&self, format: &str) -> String {
        let mut out = String::new();
        let mut chars = format.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let Some(d) = chars.next() else {
                out.push('%');
                break;
            };
            let month_name = MONTHS[(self.month - 1) as usize];
            let weekday_name = WEEKDAYS[self.weekday as usize];
            let hour12 = match self.hour % 12 {
                0 => 12,
                h => h,
            };
            let _ = match d {
                'Y' => write!(out, "{}", self.year),
                'y' => write!(out, "{:02}", self.year.rem_euclid(100)),
                'm' => write!(out, "{:02}", self.month),
                'd' => write!(out, "{:02}", self.day),
                'e' => write!(out, "{:>2}", self.day),
                'H' => write!(out, "{:02}", self.hour),
                'I' => write!(out, "{hour12:02}"),
                'M' => write!(out, "{:02}", self.minute),
                'S' => write!(out, "{:02}", self.second),
                'p' => write!(out, "{}", if self.hour < 12 { "AM" } else { "PM" }),
                'B' => write!(out, "{month_name}"),
                'b' | 'h' => write!(out, "{}", &month_name[..3]),
                'A' => write!(out, "{weekday_name}"),
                'a' => write!(out, "{}", &weekday_name[..3]),
                'j' => write!(out, "{:03}", self.yearday),
                'u' => write!(out, "{}", self.weekday + 1),
                'w' => write!(out, "{}", (self.weekday + 1) % 7),
                'F' => write!(out, "{}-{:02}-{:02}", self.year, self.month, self.day),
                'T' => write!(
                    out,
                    "{:02}:{:02}:{:02}",
                    self.hour, self.minute, self.second
                ),
                'Z' | 'z' => Ok(()),
                '%' => write!(out, "%"),
                other => write!(out, "%{other}"),
            };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::CivilTime;

    #[test]
    fn known_dates() {
        let t = CivilTime::from_unix(0);
        assert_eq!(
            t.strftime("%Y-%m-%d %H:%M:%S %A %j"),
            "1970-01-01 00:00:00 Thursday 001"
        );
        // 2024-02-29T13:05:09Z, a leap day (a Thursday).
        let t = CivilTime::from_unix(1_709_211_909);
        assert_eq!(
            t.strftime("%d %B %Y %a %I%p %j %%"),
            "29 February 2024 Thu 01PM 060 %"
        );
        // 2026-12-31T23:59:59Z
        let t = CivilTime::from_unix(1_798_761_599);
        assert_eq!(
            t.strftime("%d %b %Y %H:%M:%S %j"),
            "31 Dec 2026 23:59:59 365"
        );
    }
}
