//! Bounds on `dead/`: refused and expired reports are kept for an operator to look at, but not
//! without end — at most `report_dead_max` of them, `report_dead_max_bytes` in all, none older
//! than `report_dead_max_age_s`; the earliest burials go first, a report with its answer.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Of a buried report's answer file, the suffix after the report's own file name.
const ANSWER_SUFFIX: &str = ".answer.json";

#[derive(Debug, Clone, Copy)]
pub struct DeadLimits {
    pub max_count: usize,
    pub max_bytes: u64,
    pub max_age: Duration,
}

/// Which bound removed a buried report (the `reason` label of
/// `callbridge_reports_dead_pruned_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneReason {
    Count,
    Bytes,
    Age,
}

impl PruneReason {
    pub const ALL: [PruneReason; 3] = [PruneReason::Count, PruneReason::Bytes, PruneReason::Age];

    pub fn as_str(self) -> &'static str {
        match self {
            PruneReason::Count => "count",
            PruneReason::Bytes => "bytes",
            PruneReason::Age => "age",
        }
    }

    /// The setting that bound is, for the log line.
    pub fn setting(self) -> &'static str {
        match self {
            PruneReason::Count => "report_dead_max",
            PruneReason::Bytes => "report_dead_max_bytes",
            PruneReason::Age => "report_dead_max_age_s",
        }
    }
}

/// One buried report: its file name in `dead/` (the answer is that plus [`ANSWER_SUFFIX`]).
struct Grave {
    name: String,
    bytes: u64,
    buried: SystemTime,
}

/// What `dead/` holds, earliest burial first (kept in memory: pruning after each burial does
/// not list the directory).
pub struct Dead {
    dir: PathBuf,
    limits: DeadLimits,
    graves: VecDeque<Grave>,
    bytes: u64,
}

impl Dead {
    /// Indexes what earlier runs left in `dir`. A report's burial time is its answer's mtime
    /// (written at burial; the report keeps the mtime of when it was spooled).
    pub fn scan(dir: &Path, limits: DeadLimits) -> std::io::Result<Dead> {
        let mut by_name: std::collections::BTreeMap<String, Grave> = Default::default();
        for e in std::fs::read_dir(dir)?.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let file = e.file_name().to_string_lossy().into_owned();
            let (name, is_answer) = match file.strip_suffix(ANSWER_SUFFIX) {
                Some(report) => (report.to_owned(), true),
                None => (file, false),
            };
            let modified = meta.modified().unwrap_or_else(|_| SystemTime::now());
            let grave = by_name.entry(name.clone()).or_insert(Grave {
                name,
                bytes: 0,
                buried: modified,
            });
            grave.bytes += meta.len();
            if is_answer {
                grave.buried = modified;
            }
        }
        let mut graves: Vec<Grave> = by_name.into_values().collect();
        graves.sort_by(|a, b| a.buried.cmp(&b.buried).then_with(|| a.name.cmp(&b.name)));
        Ok(Dead {
            dir: dir.to_owned(),
            limits,
            bytes: graves.iter().map(|g| g.bytes).sum(),
            graves: graves.into(),
        })
    }

    /// Counts a report just moved here (with its answer).
    pub fn buried(&mut self, name: &str, now: SystemTime) {
        let size = |file: String| std::fs::metadata(self.dir.join(file)).map_or(0, |m| m.len());
        let bytes = size(name.to_owned()) + size(format!("{name}{ANSWER_SUFFIX}"));
        self.bytes += bytes;
        self.graves.push_back(Grave {
            name: name.to_owned(),
            bytes,
            buried: now,
        });
    }

    /// The file names of the reports here, earliest burial first.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.graves.iter().map(|g| g.name.as_str())
    }

    /// Removes the earliest burials past the limits; returns each removed report and why.
    pub fn prune(&mut self, now: SystemTime) -> Vec<(String, PruneReason)> {
        let mut removed = Vec::new();
        while let Some(oldest) = self.graves.front() {
            let age = now.duration_since(oldest.buried).unwrap_or_default();
            let reason = if age > self.limits.max_age {
                PruneReason::Age
            } else if self.graves.len() > self.limits.max_count {
                PruneReason::Count
            } else if self.bytes > self.limits.max_bytes {
                PruneReason::Bytes
            } else {
                break;
            };
            let Some(grave) = self.graves.pop_front() else {
                break;
            };
            // Already gone (an operator cleaned up by hand) is as good as removed.
            let _ = std::fs::remove_file(self.dir.join(&grave.name));
            let _ = std::fs::remove_file(self.dir.join(format!("{}{ANSWER_SUFFIX}", grave.name)));
            self.bytes = self.bytes.saturating_sub(grave.bytes);
            removed.push((grave.name, reason));
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("cb-dead-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn bury(dir: &Path, dead: &mut Dead, name: &str, bytes: usize, at: SystemTime) {
        std::fs::write(dir.join(name), vec![b'x'; bytes]).unwrap();
        std::fs::write(dir.join(format!("{name}{ANSWER_SUFFIX}")), b"{}").unwrap();
        dead.buried(name, at);
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn the_earliest_burials_go_first_by_count_bytes_and_age_with_their_answers() {
        let dir = tmpdir("bounds");
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |s| t0 + Duration::from_secs(s);
        let limits = DeadLimits {
            max_count: 3,
            max_bytes: 1000,
            max_age: Duration::from_secs(100),
        };
        let mut dead = Dead::scan(&dir, limits).unwrap();
        for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
            bury(&dir, &mut dead, name, 100, at(i as u64));
            assert!(dead.prune(at(i as u64)).is_empty());
        }
        bury(&dir, &mut dead, "d", 100, at(3));
        assert_eq!(dead.prune(at(3)), [("a".to_owned(), PruneReason::Count)]);
        assert_eq!(
            files(&dir),
            [
                "b",
                "b.answer.json",
                "c",
                "c.answer.json",
                "d",
                "d.answer.json"
            ]
        );
        bury(&dir, &mut dead, "e", 800, at(4));
        assert_eq!(
            dead.prune(at(4)),
            [
                ("b".to_owned(), PruneReason::Count),
                ("c".to_owned(), PruneReason::Bytes)
            ],
            "four over a count of 3, then 1006 bytes over 1000"
        );
        assert_eq!(dead.names().collect::<Vec<_>>(), ["d", "e"]);
        assert_eq!(
            dead.prune(at(104)),
            [("d".to_owned(), PruneReason::Age)],
            "d was buried at 3: 101 s > 100 s; e at 4 is 100 s old"
        );
        assert_eq!(files(&dir), ["e", "e.answer.json"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_scan_finds_earlier_burials_and_answers_without_a_report() {
        let dir = tmpdir("scan");
        std::fs::write(dir.join("0000000000002-rpt_b.json"), b"{}").unwrap();
        std::fs::write(dir.join("0000000000002-rpt_b.json.answer.json"), b"{}").unwrap();
        // A crash between writing the answer and moving the report leaves the answer alone.
        std::fs::write(dir.join("0000000000001-rpt_a.json.answer.json"), b"{}").unwrap();
        let limits = DeadLimits {
            max_count: 10,
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(3600),
        };
        let mut dead = Dead::scan(&dir, limits).unwrap();
        let mut names: Vec<&str> = dead.names().collect();
        names.sort();
        assert_eq!(
            names,
            ["0000000000001-rpt_a.json", "0000000000002-rpt_b.json"]
        );
        assert_eq!(dead.bytes, 6);
        let later = SystemTime::now() + Duration::from_secs(7200);
        assert_eq!(dead.prune(later).len(), 2);
        assert!(files(&dir).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
