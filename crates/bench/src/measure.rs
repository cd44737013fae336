//! Measuring helpers: order statistics, memory and CPU time from `/proc`, the cost of one fsync.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::Error;

/// Linux reports process CPU time in `/proc/PID/stat` in ticks of this many per second
/// (`USER_HZ`, fixed at 100 by the kernel's user-space ABI).
const USER_HZ: f64 = 100.0;

/// Median of `samples` (not empty), by sorting a copy.
pub(crate) fn median(samples: &[f64]) -> f64 {
    quantile(samples, 0.5)
}

/// The `q` quantile (0.0..=1.0) of `samples` by nearest rank; NaN when empty.
pub(crate) fn quantile(samples: &[f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Milliseconds in `d`, as a float.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// This process's resident set now and at its peak (`VmRSS`, `VmHWM`), in bytes.
pub(crate) fn rss() -> Option<(u64, u64)> {
    rss_at("/proc/self/status")
}

/// Another process's resident set now (`VmRSS`), in bytes.
pub(crate) fn rss_of(pid: u32) -> Option<u64> {
    rss_at(&format!("/proc/{pid}/status")).map(|(now, _)| now)
}

/// What this process has written so far, from `/proc/self/io`: `wchar`, the bytes passed to
/// write calls (whatever became of them), and `write_bytes`, the bytes it caused to reach the
/// block layer (counted in whole pages as they are dirtied; zero where the kernel does not
/// account it, as in some containers).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ProcIo {
    pub(crate) wchar: u64,
    pub(crate) write_bytes: u64,
}

/// [`ProcIo`] now; zeros when `/proc/self/io` cannot be read.
pub(crate) fn proc_io() -> ProcIo {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    let field = |name: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    ProcIo {
        wchar: field("wchar:"),
        write_bytes: field("write_bytes:"),
    }
}

fn rss_at(path: &str) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(path).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kib| kib * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU time (user + system) a process has used, threads that ended included; `None` is this
/// process.
pub(crate) fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces; the fields after it start past the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name, `state` is field 0, so utime (field 14 of the whole line) is index 11.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// Median time of writing 1 KiB to a file in `dir` and `fdatasync`-ing it.
pub(crate) fn fsync_cost(dir: &Path, reps: usize) -> Result<Duration, Error> {
    let path = dir.join("fsync-probe");
    let mut file =
        std::fs::File::create(&path).map_err(Error::io(format!("creating {}", path.display())))?;
    let block = [b'x'; 1024];
    let mut samples = Vec::with_capacity(reps);
    for _ in 0..reps {
        let began = Instant::now();
        file.write_all(&block)
            .and_then(|()| file.sync_data())
            .map_err(Error::io(format!("writing {}", path.display())))?;
        samples.push(began.elapsed().as_secs_f64());
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok(Duration::from_secs_f64(median(&samples)))
}

/// The load averages over 1, 5 and 15 minutes, as `/proc/loadavg` has them: other work on
/// the machine makes every figure worse, so the report says how busy it was.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// One line about the machine: CPU model, CPUs, memory, kernel.
pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map_or_else(String::new, |kib| {
            format!(", {:.0} GiB", kib as f64 / 1024.0 / 1024.0)
        });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| format!(", Linux {}", k.trim()))
        .unwrap_or_default();
    format!("{cpu}, {cpus} CPUs{memory}{kernel}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 1.0), 5.0);
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.0), 1.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn proc_readings_parse() {
        let (rss, hwm) = rss().expect("VmRSS and VmHWM");
        assert!(rss > 0 && hwm >= rss);
        assert!(cpu_seconds(None).is_some());
        let before = proc_io();
        let file = tempfile::NamedTempFile::new().expect("a temporary file");
        std::fs::write(file.path(), [0u8; 100]).expect("a write");
        assert!(proc_io().wchar >= before.wchar + 100);
    }
}
