//! What the bot remembers across restarts and redeploys: per-guild settings and which deploys it
//! has announced. One small JSON file on the data volume, replaced atomically on every change.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// How many announced deploy ids are kept (enough to never announce one twice).
const LEDGER: usize = 100;

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuildSettings {
    /// Where deploy results are posted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub announce_channel: Option<u64>,
    /// The status message kept current in the announce channel (edited in place).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_message: Option<u64>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct State {
    /// Keyed by guild id (a string: JSON keys are strings anyway).
    guilds: BTreeMap<String, GuildSettings>,
    /// Deploy ids already announced, oldest first.
    announced: Vec<String>,
}

/// The settings file and its contents; every change is on disk before the call returns.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    state: Mutex<State>,
}

impl Store {
    /// Opens `dir/settings.json`, creating the folder. A file that does not parse is an error
    /// naming the file, line and column, and is left as it is.
    pub fn open(dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let path = dir.join("settings.json");
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                format!(
                    "{}:{}:{}: {e} (fix or remove the file)",
                    path.display(),
                    e.line(),
                    e.column()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok(Self {
            path,
            state: Mutex::new(state),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut state)
    }

    /// Applies `change` and writes the file; on a write error the change is undone.
    fn change(&self, change: impl FnOnce(&mut State)) -> std::io::Result<()> {
        self.with(|state| {
            let before = state.clone();
            change(state);
            let written = write_atomically(&self.path, state);
            if written.is_err() {
                *state = before;
            }
            written
        })
    }

    pub fn guild(&self, guild: u64) -> GuildSettings {
        self.with(|s| {
            s.guilds
                .get(&guild.to_string())
                .cloned()
                .unwrap_or_default()
        })
    }

    pub fn set_announce_channel(&self, guild: u64, channel: Option<u64>) -> std::io::Result<()> {
        self.change(|s| {
            let entry = s.guilds.entry(guild.to_string()).or_default();
            if entry.announce_channel != channel {
                // A new channel gets a status message of its own.
                entry.status_message = None;
            }
            entry.announce_channel = channel;
            if *entry == GuildSettings::default() {
                s.guilds.remove(&guild.to_string());
            }
        })
    }

    /// Every (guild, channel) that wants announcements.
    pub fn announce_channels(&self) -> Vec<(u64, u64)> {
        self.with(|s| {
            s.guilds
                .iter()
                .filter_map(|(g, settings)| Some((g.parse().ok()?, settings.announce_channel?)))
                // Discord ids are never 0; a hand-edited 0 would only fail later.
                .filter(|&(g, c): &(u64, u64)| g != 0 && c != 0)
                .collect()
        })
    }

    /// The status message of `guild`'s announce channel, when one was posted.
    pub fn status_message(&self, guild: u64) -> Option<u64> {
        self.guild(guild).status_message
    }

    pub fn set_status_message(&self, guild: u64, message: Option<u64>) -> std::io::Result<()> {
        self.change(|s| {
            if let Some(entry) = s.guilds.get_mut(&guild.to_string()) {
                entry.status_message = message;
            }
        })
    }

    pub fn was_announced(&self, deploy_id: &str) -> bool {
        self.with(|s| s.announced.iter().any(|id| id == deploy_id))
    }

    pub fn mark_announced(&self, deploy_id: &str) -> std::io::Result<()> {
        self.change(|s| {
            s.announced.push(deploy_id.to_owned());
            let excess = s.announced.len().saturating_sub(LEDGER);
            s.announced.drain(..excess);
        })
    }
}

/// Write to a temporary file beside `path`, flush it to disk, rename it over `path`, then
/// flush the folder: a crash leaves the old file or the new one, never half of one.
fn write_atomically(path: &Path, state: &State) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&bytes)?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn settings_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.set_announce_channel(10, Some(20)).unwrap();
        store.set_announce_channel(11, Some(21)).unwrap();
        store.mark_announced("d-1").unwrap();
        let again = Store::open(dir.path()).unwrap();
        assert_eq!(again.guild(10).announce_channel, Some(20));
        assert_eq!(again.announce_channels(), vec![(10, 20), (11, 21)]);
        assert!(again.was_announced("d-1"));
        assert!(!again.was_announced("d-2"));
        again.set_announce_channel(10, None).unwrap();
        assert_eq!(
            Store::open(dir.path()).unwrap().announce_channels(),
            vec![(11, 21)]
        );
        assert!(!dir.path().join("settings.json.tmp").exists());
    }

    #[test]
    fn the_ledger_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for i in 0..LEDGER + 5 {
            store.mark_announced(&format!("d-{i}")).unwrap();
        }
        assert!(!store.was_announced("d-4"));
        assert!(store.was_announced("d-5"));
        assert!(store.was_announced(&format!("d-{}", LEDGER + 4)));
    }

    #[test]
    fn a_broken_file_is_named_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        std::fs::write(
            &path,
            "{\n  \"guilds\": {\n    \"1\": {\"announce_chanel\": 5}\n  }\n}\n",
        )
        .unwrap();
        let e = Store::open(dir.path()).unwrap_err();
        assert!(e.starts_with(&format!("{}:3:", path.display())), "{e}");
        assert!(e.contains("announce_chanel"), "{e}");
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains("announce_chanel")
        );
    }

    #[test]
    fn a_failed_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.set_announce_channel(1, Some(2)).unwrap();
        // A folder where the temporary file goes: the write fails.
        std::fs::create_dir(dir.path().join("settings.json.tmp")).unwrap();
        assert!(store.set_announce_channel(1, Some(3)).is_err());
        assert_eq!(store.guild(1).announce_channel, Some(2));
        std::fs::remove_dir(dir.path().join("settings.json.tmp")).unwrap();
        assert_eq!(
            Store::open(dir.path()).unwrap().guild(1).announce_channel,
            Some(2)
        );
    }
}
