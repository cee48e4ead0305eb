//! The standard `process_*` metrics (the names every Prometheus client
//! library exports, so stock dashboards and alerts work): resident and
//! virtual memory, CPU seconds, open and maximum file descriptors, start
//! time. Read from the kernel at each scrape; a value the platform does not
//! offer is left out rather than reported as 0.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

#[derive(Debug)]
pub(super) struct ProcessCollector {
    /// Unix seconds at which the daemon started.
    start_time: f64,
}

impl ProcessCollector {
    pub(super) fn new(started: SystemTime) -> Self {
        ProcessCollector {
            start_time: started
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
        }
    }
}

/// One reading of the process's resources.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Reading {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<i64>,
    pub virtual_bytes: Option<i64>,
    pub open_fds: Option<i64>,
    pub max_fds: Option<i64>,
}

impl Reading {
    pub(super) fn now() -> Reading {
        let status = std::fs::read_to_string("/proc/self/status").ok();
        Reading {
            cpu_seconds: cpu_seconds(),
            resident_bytes: status.as_deref().and_then(|s| status_kib(s, "VmRSS:")),
            virtual_bytes: status.as_deref().and_then(|s| status_kib(s, "VmSize:")),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as i64),
            max_fds: nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                .ok()
                .map(|(soft, _)| i64::try_from(soft).unwrap_or(i64::MAX)),
        }
    }
}

fn cpu_seconds() -> Option<f64> {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Some(secs(usage.user_time()) + secs(usage.system_time()))
}

/// `VmRSS:     1234 kB` in `/proc/self/status`, in bytes.
fn status_kib(status: &str, key: &str) -> Option<i64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kib: i64 = line[key.len()..].split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let r = Reading::now();
        if let Some(v) = r.cpu_seconds {
            let c = ConstCounter::new(v);
            c.encode(encoder.encode_descriptor(
                "process_cpu",
                "Total user and system CPU time spent",
                Some(&Unit::Seconds),
                c.metric_type(),
            )?)?;
        }
        let gauges = [
            (
                "process_resident_memory",
                "Resident memory size",
                Some(Unit::Bytes),
                r.resident_bytes,
            ),
            (
                "process_virtual_memory",
                "Virtual memory size",
                Some(Unit::Bytes),
                r.virtual_bytes,
            ),
            (
                "process_open_fds",
                "Open file descriptors",
                None,
                r.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors (soft limit)",
                None,
                r.max_fds,
            ),
        ];
        for (name, help, unit, value) in gauges {
            if let Some(v) = value {
                let g = ConstGauge::new(v);
                g.encode(encoder.encode_descriptor(name, help, unit.as_ref(), g.metric_type())?)?;
            }
        }
        let start = ConstGauge::new(self.start_time);
        start.encode(encoder.encode_descriptor(
            "process_start_time",
            "Start time of the process since the Unix epoch",
            Some(&Unit::Seconds),
            start.metric_type(),
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_memory_from_proc_status_in_bytes() {
        let status = "Name:\toj\nVmSize:\t  20480 kB\nVmRSS:\t    1024 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(1024 * 1024));
        assert_eq!(status_kib(status, "VmSize:"), Some(20480 * 1024));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_memory_cpu_and_fds() {
        let r = Reading::now();
        assert!(r.resident_bytes.unwrap_or(0) > 0);
        assert!(r.open_fds.unwrap_or(0) >= 3);
        assert!(r.max_fds.unwrap_or(0) >= r.open_fds.unwrap_or(0));
        assert!(r.cpu_seconds.is_some());
    }
}
