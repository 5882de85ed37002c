//! The report spool: one file per report not yet delivered, written (and synced) before the
//! first try, removed only after a 2xx. File names start with the creation time in ms, so the
//! directory sorts oldest first; `dead/` keeps what a receiver refused, beside its answer.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What a spool file holds: the exact bytes to send and where to send them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub report_id: String,
    pub url: String,
    /// When the report was written: retries stop `report_retry_max` after it, across restarts.
    pub created_unix_ms: u64,
    /// The JSON document, kept as the string that is signed and sent.
    pub body: String,
}

impl Entry {
    pub fn file_name(&self) -> String {
        format!("{:013}-{}.json", self.created_unix_ms, self.report_id)
    }
}

/// The report id in a spool file's name (see [`Entry::file_name`]).
pub fn report_id_in(file_name: &str) -> Option<&str> {
    let (_, id) = file_name.strip_suffix(".json")?.split_once('-')?;
    Some(id)
}

pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// Opens (creating) `dir` and `dir/dead`, and removes half-written files of a crash.
    pub fn open(dir: &Path) -> std::io::Result<Spool> {
        std::fs::create_dir_all(dir.join("dead"))?;
        for e in std::fs::read_dir(dir)?.flatten() {
            if e.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(Spool {
            dir: dir.to_owned(),
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Where refused and expired reports are kept (see `dead.rs` for its bounds).
    pub fn dead_dir(&self) -> PathBuf {
        self.dir.join("dead")
    }

    /// Writes `entry` durably: a temporary file, synced, renamed into place, directory synced.
    pub fn write(&self, entry: &Entry) -> std::io::Result<String> {
        let name = entry.file_name();
        let tmp = self.dir.join(format!(".tmp-{name}"));
        let bytes = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, self.dir.join(&name))?;
        // The rename itself must survive a power cut; not every platform can sync a directory.
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(name)
    }

    /// Reads one spooled entry; `None` if it is gone or unreadable (logged by the caller).
    pub fn read(&self, name: &str) -> std::io::Result<Entry> {
        let bytes = std::fs::read(self.dir.join(name))?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }

    pub fn exists(&self, name: &str) -> bool {
        self.dir.join(name).is_file()
    }

    /// The spooled reports, oldest first.
    pub fn list(&self) -> std::io::Result<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)?
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
            .collect();
        names.sort();
        Ok(names)
    }

    pub fn remove(&self, name: &str) -> std::io::Result<()> {
        std::fs::remove_file(self.dir.join(name))
    }

    /// Moves a report to `dead/` and writes why beside it (`<name>.answer.json`).
    pub fn bury(&self, name: &str, why: &serde_json::Value) -> std::io::Result<()> {
        let dead = self.dir.join("dead");
        let answer = serde_json::to_vec_pretty(why).map_err(std::io::Error::other)?;
        std::fs::write(dead.join(format!("{name}.answer.json")), answer)?;
        std::fs::rename(self.dir.join(name), dead.join(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("cb-spool-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn write_list_read_bury() {
        let dir = tmpdir("basic");
        let spool = Spool::open(&dir).unwrap();
        std::fs::write(dir.join(".tmp-crashed.json"), b"{").unwrap();
        let spool = {
            drop(spool);
            Spool::open(&dir).unwrap()
        };
        assert!(
            !dir.join(".tmp-crashed.json").exists(),
            "crash leftovers cleaned"
        );
        let mk = |ms, id: &str| Entry {
            report_id: id.into(),
            url: "http://x/r".into(),
            created_unix_ms: ms,
            body: format!("{{\"report_id\":\"{id}\"}}"),
        };
        let b = spool.write(&mk(2000, "rpt_b")).unwrap();
        let a = spool.write(&mk(1000, "rpt_a")).unwrap();
        assert_eq!(
            spool.list().unwrap(),
            [a.clone(), b.clone()],
            "oldest first"
        );
        assert_eq!(spool.read(&a).unwrap().body, "{\"report_id\":\"rpt_a\"}");
        assert_eq!(report_id_in(&a), Some("rpt_a"));
        assert_eq!(report_id_in("x.json"), None);
        spool.bury(&a, &serde_json::json!({"status": 400})).unwrap();
        assert_eq!(spool.list().unwrap(), [b]);
        assert!(dir.join("dead").join(&a).is_file());
        assert!(dir.join("dead").join(format!("{a}.answer.json")).is_file());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
