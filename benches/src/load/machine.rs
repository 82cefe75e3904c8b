//! Facts about the machine a run was measured on, saved with every JSON
//! result: numbers from different machines must not be compared blindly.
//!
//! Every fact is read from /proc (Linux); one that cannot be read is
//! `"unknown"` rather than an error, because a missing fact must not stop a
//! benchmark.

use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Machine {
    pub cpu_model: String,
    /// Cores this process may run on.
    pub cores: usize,
    pub kernel: String,
    /// Filesystem type of the current directory's mount (ext4, tmpfs, ...).
    pub filesystem: String,
    pub hostname: String,
}

const UNKNOWN: &str = "unknown";

impl Machine {
    pub fn current() -> Machine {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        let cpu_model = read("/proc/cpuinfo")
            .and_then(|text| cpu_model(&text))
            .unwrap_or_else(|| UNKNOWN.into());
        let filesystem = std::env::current_dir()
            .ok()
            .zip(read("/proc/self/mountinfo"))
            .and_then(|(dir, mounts)| filesystem_of(&dir, &mounts))
            .unwrap_or_else(|| UNKNOWN.into());
        let trimmed = |path| read(path).map(|text| text.trim().to_string());
        Machine {
            cpu_model,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel: trimmed("/proc/sys/kernel/osrelease").unwrap_or_else(|| UNKNOWN.into()),
            filesystem,
            hostname: trimmed("/proc/sys/kernel/hostname").unwrap_or_else(|| UNKNOWN.into()),
        }
    }
}

/// The first `model name` of /proc/cpuinfo.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map(|(_, model)| model.trim().to_string())
}

/// The filesystem type of the mount holding `dir`: the longest mount point
/// that is a prefix of it, from /proc/self/mountinfo (fields: id, parent,
/// dev, root, mount point, options, optional fields..., "-", type, ...).
fn filesystem_of(dir: &Path, mountinfo: &str) -> Option<String> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let mount_point = fields.nth(4)?;
            let fs_type = fields.skip_while(|f| *f != "-").nth(1)?;
            Some((mount_point, fs_type))
        })
        .filter(|(mount_point, _)| dir.starts_with(mount_point))
        .max_by_key(|(mount_point, _)| mount_point.len())
        .map(|(_, fs_type)| fs_type.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpuinfo_and_mountinfo() {
        let cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t: x\n";
        assert_eq!(cpu_model(cpuinfo).as_deref(), Some("AMD EPYC 7B13"));
        let mountinfo = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:25 / /tmp rw shared:5 - tmpfs tmpfs rw
31 22 0:26 / /work rw - overlay overlay rw";
        let fs = |dir: &str| filesystem_of(Path::new(dir), mountinfo);
        assert_eq!(fs("/home/x").as_deref(), Some("ext4"));
        assert_eq!(fs("/tmp/a/b").as_deref(), Some("tmpfs"));
        assert_eq!(fs("/work").as_deref(), Some("overlay"));
        // A path prefix that is not a whole component does not count.
        assert_eq!(fs("/tmpx").as_deref(), Some("ext4"));
    }

    #[test]
    fn current_machine_has_facts() {
        let machine = Machine::current();
        assert!(machine.cores >= 1);
        assert!(!machine.kernel.is_empty());
    }
}
