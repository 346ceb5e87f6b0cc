//! CPU seconds a process has used, from `/proc/<pid>/stat` (Linux).

/// Clock ticks per second in `/proc/<pid>/stat`: the kernel's `USER_HZ`, 100 on every
/// Linux architecture Waybill runs on.
const USER_HZ: f64 = 100.0;

/// User + system CPU seconds of `/proc/<pid>` (`self` for this process), or `None` when
/// it cannot be read (not Linux, or the process is gone).
pub fn seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line, in seconds. The command
/// name (field 2) is in parentheses and may contain spaces, so fields count from its `)`.
fn parse_stat(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After ")": field 3 (state) is index 0, so utime (14) is index 11.
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_utime_and_stime_past_a_name_with_spaces() {
        let line = "4242 (way bill) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 70 0 0 20 0 12 0 100 0 0";
        assert_eq!(parse_stat(line), Some(3.2));
        assert!(seconds("self").is_some_and(|s| s >= 0.0));
    }
}
