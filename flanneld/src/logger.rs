//! A small stderr logger in klog's line format (`I1123 14:30:32.123456  1234 module] text`),
//! so log scrapers written for upstream keep working. `-v` maps to the level: 0 shows info and
//! above, 1+ adds debug, 3+ adds trace.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

struct StderrLogger {
    max: log::LevelFilter,
}

/// Installs the logger once; later calls only change the level.
pub fn init(verbosity: i64) {
    let max = match verbosity {
        i64::MIN..=0 => log::LevelFilter::Info,
        1 | 2 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    let _ = log::set_boxed_logger(Box::new(StderrLogger { max }));
    log::set_max_level(max);
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `MMDD hh:mm:ss.uuuuuu` in UTC.
fn stamp(now: SystemTime) -> String {
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (_, month, day) = civil(secs.div_euclid(86_400));
    let tod = secs.rem_euclid(86_400);
    format!(
        "{month:02}{day:02} {:02}:{:02}:{:02}.{:06}",
        tod / 3600,
        tod / 60 % 60,
        tod % 60,
        d.subsec_micros()
    )
}

/// `2026-11-23T14:30:32Z`, for times shown in log lines (lease expirations).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let (y, m, d) = civil(secs.div_euclid(86_400));
    let tod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        tod / 3600,
        tod / 60 % 60,
        tod % 60
    )
}

impl log::Log for StderrLogger {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        // Dependencies (tonic, h2, ...) only speak at -v 3 and above, except for their
        // warnings and errors. kube-client's warnings are about watch streams ending
        // ("eof in poll"), which flanneld's own list + watch loop reports in its words.
        let target = meta.target();
        meta.level() <= self.max
            && (target.starts_with("flanneld")
                || self.max >= log::LevelFilter::Trace
                || (meta.level() <= log::Level::Warn && !target.starts_with("kube_client")))
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let sev = match record.level() {
            log::Level::Error => 'E',
            log::Level::Warn => 'W',
            _ => 'I',
        };
        let module = record
            .module_path()
            .unwrap_or("")
            .rsplit("::")
            .next()
            .unwrap_or("");
        let line = format!(
            "{sev}{} {:>7} {module}] {}\n",
            stamp(SystemTime::now()),
            std::process::id(),
            record.args()
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stamps_are_klog_shaped() {
        let t = UNIX_EPOCH + Duration::from_micros(1_795_444_232_123_456);
        assert_eq!(stamp(t), "1123 14:30:32.123456");
        assert_eq!(stamp(UNIX_EPOCH), "0101 00:00:00.000000");
        assert_eq!(civil(11_016), (2000, 2, 29));
        assert_eq!(rfc3339(t), "2026-11-23T14:30:32Z");
    }
}
