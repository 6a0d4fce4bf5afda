//! Local time and Go's time layouts (`2006-01-02 15:04:05`), for log lines and for the
//! `--snmplog` file name, which kcptun formats with Go's `time.Format`.

use std::time::{SystemTime, UNIX_EPOCH};

/// A broken-down local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tm {
    /// Seconds since the Unix epoch.
    pub unix: i64,
    /// Year, e.g. 2026.
    pub year: i64,
    /// Month 1..=12.
    pub month: u32,
    /// Day of the month 1..=31.
    pub day: u32,
    /// Hour 0..=23.
    pub hour: u32,
    /// Minute 0..=59.
    pub minute: u32,
    /// Second 0..=60.
    pub second: u32,
    /// Day of the week, 0 = Sunday.
    pub weekday: u32,
    /// Offset from UTC in seconds.
    pub offset: i64,
}

/// Days since 1970-01-01 to a civil date (proleptic Gregorian).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The broken-down time of `unix` seconds at `offset` seconds from UTC.
pub fn at(unix: i64, offset: i64) -> Tm {
    let local = unix + offset;
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    let (year, month, day) = civil(days);
    Tm {
        unix,
        year,
        month,
        day,
        hour: (secs / 3600) as u32,
        minute: (secs / 60 % 60) as u32,
        second: (secs % 60) as u32,
        weekday: (days + 4).rem_euclid(7) as u32,
        offset,
    }
}

/// The local offset from UTC at `unix` (0 where the platform does not say).
fn local_offset(unix: i64) -> i64 {
    #[cfg(unix)]
    {
        let t = unix as libc::time_t;
        // SAFETY: `tm` is plain data that localtime_r fills in; both pointers are valid for
        // the call.
        unsafe {
            let mut tm: libc::tm = std::mem::zeroed();
            if !libc::localtime_r(&t, &mut tm).is_null() {
                return tm.tm_gmtoff as i64;
            }
        }
    }
    let _ = unix;
    0
}

/// Now, in local time.
pub fn now() -> Tm {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    at(unix, local_offset(unix))
}

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
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Formats `t` with a Go layout. Supported elements: `2006` `06` `January` `Jan` `01` `1`
/// `Monday` `Mon` `02` `_2` `2` `15` `03` `3` `04` `4` `05` `5` `PM` `pm` `-0700` `-07:00`
/// `Z0700` `Z07:00`; everything else is copied as it is.
pub fn format(t: &Tm, layout: &str) -> String {
    let mut out = String::new();
    let mut rest = layout;
    let h12 = if t.hour.is_multiple_of(12) {
        12
    } else {
        t.hour % 12
    };
    let zone = |colon: bool, z: bool| {
        if z && t.offset == 0 {
            return "Z".to_owned();
        }
        let sign = if t.offset < 0 { '-' } else { '+' };
        let m = t.offset.abs() / 60;
        if colon {
            format!("{sign}{:02}:{:02}", m / 60, m % 60)
        } else {
            format!("{sign}{:02}{:02}", m / 60, m % 60)
        }
    };
    while !rest.is_empty() {
        let table: [(&str, String); 25] = [
            ("January", MONTHS[(t.month - 1) as usize].to_owned()),
            ("Jan", MONTHS[(t.month - 1) as usize][..3].to_owned()),
            ("Monday", DAYS[t.weekday as usize].to_owned()),
            ("Mon", DAYS[t.weekday as usize][..3].to_owned()),
            ("2006", format!("{:04}", t.year)),
            ("Z07:00", zone(true, true)),
            ("Z0700", zone(false, true)),
            ("-07:00", zone(true, false)),
            ("-0700", zone(false, false)),
            ("01", format!("{:02}", t.month)),
            ("02", format!("{:02}", t.day)),
            ("03", format!("{h12:02}")),
            ("04", format!("{:02}", t.minute)),
            ("05", format!("{:02}", t.second)),
            ("06", format!("{:02}", t.year.rem_euclid(100))),
            ("_2", format!("{:>2}", t.day)),
            ("15", format!("{:02}", t.hour)),
            ("1", t.month.to_string()),
            ("2", t.day.to_string()),
            ("3", h12.to_string()),
            ("4", t.minute.to_string()),
            ("5", t.second.to_string()),
            ("PM", if t.hour >= 12 { "PM" } else { "AM" }.to_owned()),
            ("pm", if t.hour >= 12 { "pm" } else { "am" }.to_owned()),
            ("", String::new()),
        ];
        match table
            .iter()
            .find(|(k, _)| !k.is_empty() && rest.starts_with(k))
        {
            Some((k, v)) => {
                out.push_str(v);
                rest = &rest[k.len()..];
            }
            None => {
                let c = rest.chars().next().unwrap_or(' ');
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_reference_time() {
        // Go's reference time: Mon Jan 2 15:04:05 MST 2006 (-0700).
        let t = at(1_136_239_445, -7 * 3600);
        assert_eq!(format(&t, "2006-01-02 15:04:05"), "2006-01-02 15:04:05");
        assert_eq!(format(&t, "./snmp-20060102.log"), "./snmp-20060102.log");
        assert_eq!(
            format(&t, "Mon Jan _2 3:4:5 PM -07:00"),
            "Mon Jan  2 3:4:5 PM -07:00"
        );
        let t = at(0, 0);
        assert_eq!(
            format(&t, "2006/01/02 15:04:05 Z07:00 Monday"),
            "1970/01/01 00:00:00 Z Thursday"
        );
        let t = at(1_767_225_599, 3600); // 2025-12-31 23:59:59 UTC
        assert_eq!(format(&t, "20060102-150405"), "20260101-005959");
    }
}
