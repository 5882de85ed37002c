//! The labelled barge-in corpus: `fixtures/bargein/manifest.tsv` and its μ-law clips, made by
//! `scripts/make-bargein-corpus.sh` (columns: name, class, level_db, half, onset_ms, text).

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a clip is, as the caller means it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClipClass {
    /// A cough, door, knock, keyboard, TV, line noise, breath: not a turn; must not stop the agent.
    Noise,
    /// "mm-hmm", "yeah": the caller is listening; the answer must not be thrown away.
    Backchannel,
    /// "Wait.", a whole new question: the agent must stop.
    Interruption,
    /// A quiet line with hiss.
    Silence,
}

impl ClipClass {
    pub fn parse(s: &str) -> Option<ClipClass> {
        Some(match s {
            "noise" => ClipClass::Noise,
            "backchannel" => ClipClass::Backchannel,
            "interruption" => ClipClass::Interruption,
            "silence" => ClipClass::Silence,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ClipClass::Noise => "noise",
            ClipClass::Backchannel => "backchannel",
            ClipClass::Interruption => "interruption",
            ClipClass::Silence => "silence",
        }
    }
}

/// Which half of the corpus: tuning may look at `Tune` only; `Heldout` checks it generalises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Half {
    Tune,
    Heldout,
}

impl Half {
    pub fn name(self) -> &'static str {
        match self {
            Half::Tune => "tune",
            Half::Heldout => "heldout",
        }
    }
}

/// One clip of the corpus.
#[derive(Debug, Clone)]
pub struct CorpusClip {
    pub name: String,
    pub class: ClipClass,
    /// Peak level in dBFS.
    pub level_db: f32,
    pub half: Half,
    /// Where the speech starts inside the clip (speech clips only).
    pub onset_ms: Option<u64>,
    /// What a transcriber hears in it: the words of a speech clip, nothing for non-speech.
    pub words: String,
    /// μ-law 8 kHz.
    pub audio: Arc<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{path} line {line}: {why}")]
    Manifest {
        path: PathBuf,
        line: usize,
        why: String,
    },
}

/// The corpus in `dir` (e.g. `fixtures/bargein`), in manifest order.
pub fn load(dir: &Path) -> Result<Vec<CorpusClip>, CorpusError> {
    let path = dir.join("manifest.tsv");
    let text = std::fs::read_to_string(&path).map_err(|e| CorpusError::Io(path.clone(), e))?;
    let mut clips = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let bad = |why: String| CorpusError::Manifest {
            path: path.clone(),
            line: i + 1,
            why,
        };
        let f: Vec<&str> = line.split('\t').collect();
        let [name, class, level, half, onset, text, ..] = f[..] else {
            return Err(bad(format!(
                "expected 6 tab-separated fields, got {}",
                f.len()
            )));
        };
        let class = ClipClass::parse(class).ok_or_else(|| bad(format!("class {class:?}")))?;
        let level_db = level
            .parse()
            .map_err(|_| bad(format!("level_db {level:?}")))?;
        let half = match half {
            "tune" => Half::Tune,
            "heldout" => Half::Heldout,
            other => return Err(bad(format!("half {other:?}"))),
        };
        let onset_ms = match onset {
            "" => None,
            n => Some(n.parse().map_err(|_| bad(format!("onset_ms {n:?}")))?),
        };
        let clip_path = dir.join(format!("{name}.ulaw"));
        let audio = std::fs::read(&clip_path).map_err(|e| CorpusError::Io(clip_path, e))?;
        clips.push(CorpusClip {
            name: name.to_owned(),
            class,
            level_db,
            half,
            onset_ms,
            words: match class {
                ClipClass::Backchannel | ClipClass::Interruption => text.to_owned(),
                _ => String::new(),
            },
            audio: Arc::new(audio),
        });
    }
    Ok(clips)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed corpus loads, has every class in both halves, and its halves are disjoint
    /// and of similar size (the split rule is a checkerboard).
    #[test]
    fn committed_corpus_is_split_in_halves() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/bargein");
        let clips = load(&dir).expect("fixtures/bargein loads");
        for class in [
            ClipClass::Noise,
            ClipClass::Backchannel,
            ClipClass::Interruption,
            ClipClass::Silence,
        ] {
            let n = |h| {
                clips
                    .iter()
                    .filter(|c| c.class == class && c.half == h)
                    .count()
            };
            let (tune, heldout) = (n(Half::Tune), n(Half::Heldout));
            assert!(
                tune > 0 && heldout > 0,
                "{class:?}: {tune} tune, {heldout} heldout"
            );
            assert!(
                tune.abs_diff(heldout) <= 1,
                "{class:?}: {tune} vs {heldout}"
            );
        }
        assert!(clips.iter().all(|c| !c.audio.is_empty()));
    }
}
