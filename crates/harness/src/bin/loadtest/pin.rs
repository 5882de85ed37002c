//! CPU pinning: the load tool pins itself, and the process it measures (the bridge or the
//! floor relay) is pinned from the moment it is exec'd, so every thread either side starts
//! inherits its core(s).

use std::os::unix::process::CommandExt as _;
use std::process::Command;

/// A set of CPUs, e.g. `0`, `0,1`, `0-3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpus(pub Vec<usize>);

impl std::str::FromStr for Cpus {
    type Err = String;

    fn from_str(s: &str) -> Result<Cpus, String> {
        let mut v = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let bad = || format!("{s:?}: expected CPUs like 0, 0,1 or 0-3");
            let a: usize = a.trim().parse().map_err(|_| bad())?;
            let b: usize = b.trim().parse().map_err(|_| bad())?;
            if a > b || b >= libc::CPU_SETSIZE as usize {
                return Err(bad());
            }
            v.extend(a..=b);
        }
        v.sort_unstable();
        v.dedup();
        Ok(Cpus(v))
    }
}

impl std::fmt::Display for Cpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s: Vec<String> = self.0.iter().map(usize::to_string).collect();
        f.write_str(&s.join(","))
    }
}

fn to_set(cpus: &Cpus) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is a plain bit array; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in &cpus.0 {
        // SAFETY: `c` < CPU_SETSIZE (checked when parsed or read back from the kernel).
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    set
}

/// The calling thread's CPUs (threads it starts later inherit them).
pub fn current() -> Cpus {
    // SAFETY: as in `to_set`; sched_getaffinity writes at most size_of::<cpu_set_t>() bytes.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r != 0 {
        return Cpus(Vec::new());
    }
    let v = (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect();
    Cpus(v)
}

/// Pins the calling thread, and so every thread it starts afterwards.
pub fn pin_self(cpus: &Cpus) -> std::io::Result<()> {
    let set = to_set(cpus);
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Makes the child run on `cpus` from its first instruction (set between fork and exec, so
/// the child's PID is the measured process's and all its threads inherit the set). Without
/// this a child would inherit the load tool's own pinning.
pub fn pin_child(cmd: &mut Command, cpus: &Cpus) {
    let set = to_set(cpus);
    // SAFETY: the closure runs in the forked child before exec and only makes one
    // async-signal-safe syscall on a value copied in before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

/// The value of the first `key: value` line of a `/proc` file whose key starts with `key`
/// (`/proc/<pid>/status`, `/proc/cpuinfo`), trimmed; `None` when the file or line is missing.
pub fn proc_field(path: &std::path::Path, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    Some(line.split(':').nth(1)?.trim().to_owned())
}

/// `Cpus_allowed_list` of a running process (what it really got), e.g. `0` or `0-1`.
pub fn allowed_list(pid: u32) -> String {
    let status = format!("/proc/{pid}/status");
    proc_field(status.as_ref(), "Cpus_allowed_list:").unwrap_or_else(|| "?".into())
}

/// The distinct `Cpus_allowed_list`s of every thread of a process, e.g. `1` when all of them
/// are pinned to CPU 1.
pub fn allowed_list_all_threads(pid: u32) -> String {
    let mut lists: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| proc_field(&t.path().join("status"), "Cpus_allowed_list:"))
        .collect();
    lists.sort();
    lists.dedup();
    if lists.is_empty() {
        "?".into()
    } else {
        lists.join(" | ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse() {
        assert_eq!("1".parse::<Cpus>(), Ok(Cpus(vec![1])));
        assert_eq!("0-2,5,1".parse::<Cpus>(), Ok(Cpus(vec![0, 1, 2, 5])));
        assert!("2-1".parse::<Cpus>().is_err());
        assert!("x".parse::<Cpus>().is_err());
        assert_eq!(Cpus(vec![0, 3]).to_string(), "0,3");
    }
}
