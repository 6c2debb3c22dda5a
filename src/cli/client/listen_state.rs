//! `forebay listen`'s memory: the last event forwarded, per server and source, in a small
//! JSON file (`.forebay-listen` by default), so the next run resumes right after it.
//!
//! The file maps a key (`http://host:port`, or `http://host:port?source=NAME`) to where
//! to resume: `{"after": "evt_…"}` (the last event the handler took), or `{"at": "evt_…"}`
//! (an event the handler did not take when there was no earlier one to resume after:
//! the next run fetches and sends it first). It is re-read before each write, so listeners of several servers can share
//! it, and replaced atomically (written beside, then renamed), so a crash never leaves
//! it half written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::CliError;

/// Where the next run starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resume {
    /// With the events after this one.
    After(String),
    /// With this event itself.
    At(String),
}

pub struct StateFile {
    path: PathBuf,
    key: String,
    resume: Option<Resume>,
}

impl StateFile {
    pub fn key(server: &str, source: Option<&str>) -> String {
        match source {
            Some(source) => format!("{server}?source={source}"),
            None => server.to_owned(),
        }
    }

    pub fn load(path: &Path, key: String) -> Result<Self, CliError> {
        let resume = read(path)?.remove(&key);
        Ok(Self {
            path: path.to_owned(),
            key,
            resume,
        })
    }

    pub fn resume(&self) -> Option<&Resume> {
        self.resume.as_ref()
    }

    /// Remembers `id` as taken by the handler: the next run starts after it.
    pub fn save(&mut self, id: &str) -> Result<(), CliError> {
        self.write(Resume::After(id.to_owned()))
    }

    /// Remembers `id` as not taken, when there is nothing to resume after: the next run
    /// starts with it.
    pub fn save_not_taken(&mut self, id: &str) -> Result<(), CliError> {
        if matches!(self.resume, Some(Resume::After(_))) {
            return Ok(()); // resuming after the last one taken reaches it already
        }
        self.write(Resume::At(id.to_owned()))
    }

    fn write(&mut self, resume: Resume) -> Result<(), CliError> {
        let mut all = read(&self.path)?;
        all.insert(self.key.clone(), resume.clone());
        let mut text = serde_json::to_string_pretty(&all).unwrap_or_default();
        text.push('\n');
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = self.path.with_file_name(format!(".{name}.tmp"));
        std::fs::write(&temp, text)
            .and_then(|()| std::fs::rename(&temp, &self.path))
            .map_err(|e| CliError::io(format!("cannot write {}", self.path.display()), e))?;
        self.resume = Some(resume);
        Ok(())
    }
}

fn read(path: &Path) -> Result<BTreeMap<String, Resume>, CliError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            CliError::Usage(format!(
                "{} is not a forebay listen state file ({e}); give another --state, or delete it to start from new events",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(CliError::io(format!("cannot read {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_per_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".forebay-listen");
        let mut a = StateFile::load(&path, StateFile::key("http://a", None)).unwrap();
        assert_eq!(a.resume(), None);
        a.save("evt_1").unwrap();
        a.save_not_taken("evt_5").unwrap();
        let mut b = StateFile::load(&path, StateFile::key("http://b", Some("s"))).unwrap();
        b.save_not_taken("evt_9").unwrap();
        a.save("evt_2").unwrap();
        let a = StateFile::load(&path, StateFile::key("http://a", None)).unwrap();
        let b = StateFile::load(&path, StateFile::key("http://b", Some("s"))).unwrap();
        assert_eq!(a.resume(), Some(&Resume::After("evt_2".into())));
        assert_eq!(b.resume(), Some(&Resume::At("evt_9".into())));
        std::fs::write(&path, "junk").unwrap();
        assert!(StateFile::load(&path, "k".into()).is_err());
    }
}
