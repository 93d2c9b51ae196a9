//! The guild state a bot is handed when it identifies: what Discord would send a new session
//! (READY's guild list, then a GUILD_CREATE for each guild), kept current from the events the
//! held session receives.
//!
//! Followed: the guild itself (create, update, delete, unavailable), its channels, threads,
//! roles, emojis, stickers, members Discord listed (and the member count), voice states,
//! presences, stage instances and scheduled events. Other guild fields change only through
//! GUILD_UPDATE, which is merged.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The guilds of the held session, by id: a guild's last GUILD_CREATE as amended since, or
/// `None` while it is unavailable (listed in READY, not yet created, or in an outage).
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct Guilds {
    guilds: BTreeMap<String, Option<Value>>,
}

/// Where an event's object lives in a GUILD_CREATE: the array, and the path of the id that
/// tells its entries apart.
struct Place {
    array: &'static str,
    id: &'static [&'static str],
}

const CHANNELS: Place = Place {
    array: "channels",
    id: &["id"],
};
const THREADS: Place = Place {
    array: "threads",
    id: &["id"],
};
const ROLES: Place = Place {
    array: "roles",
    id: &["id"],
};
const MEMBERS: Place = Place {
    array: "members",
    id: &["user", "id"],
};
const VOICE: Place = Place {
    array: "voice_states",
    id: &["user_id"],
};
const PRESENCES: Place = Place {
    array: "presences",
    id: &["user", "id"],
};
const STAGES: Place = Place {
    array: "stage_instances",
    id: &["id"],
};
const SCHEDULED: Place = Place {
    array: "guild_scheduled_events",
    id: &["id"],
};

/// Whether an event of type `t` changes the guild state (so that its payload is worth
/// parsing).
pub fn follows(t: &str) -> bool {
    t.starts_with("GUILD_")
        || t.starts_with("CHANNEL_")
        || t.starts_with("THREAD_")
        || t.starts_with("STAGE_INSTANCE_")
        || t == "VOICE_STATE_UPDATE"
        || t == "PRESENCE_UPDATE"
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

impl Guilds {
    /// A new session's guilds: READY's list, all unavailable until their GUILD_CREATE.
    pub fn from_ready(ready: &Value) -> Self {
        let guilds = ready["guilds"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| Some((g["id"].as_str()?.to_owned(), None)))
            .collect();
        Self { guilds }
    }

    /// READY's `guilds` for a bot: every guild, unavailable, as Discord lists them before
    /// their GUILD_CREATE.
    pub fn ready_list(&self) -> Value {
        Value::from(
            self.guilds
                .keys()
                .map(|id| json!({"id": id, "unavailable": true}))
                .collect::<Vec<_>>(),
        )
    }

    /// The GUILD_CREATE of each available guild, in id order.
    pub fn creates(&self) -> impl Iterator<Item = &Value> {
        self.guilds.values().flatten()
    }

    pub fn len(&self) -> usize {
        self.guilds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.guilds.is_empty()
    }

    /// Applies the event `t` with payload `d` (one [`follows`] accepts).
    pub fn apply(&mut self, t: &str, d: &Value) {
        let guild_id = d["guild_id"].as_str();
        match t {
            "GUILD_CREATE" => {
                let Some(id) = d["id"].as_str() else { return };
                let value = (d["unavailable"] != true).then(|| d.clone());
                self.guilds.insert(id.to_owned(), value);
            }
            "GUILD_UPDATE" => {
                let (Some(id), Some(fields)) = (d["id"].as_str(), d.as_object()) else {
                    return;
                };
                if let Some(Some(Value::Object(guild))) = self.guilds.get_mut(id) {
                    for (k, v) in fields {
                        guild.insert(k.clone(), v.clone());
                    }
                }
            }
            "GUILD_DELETE" => {
                let Some(id) = d["id"].as_str() else { return };
                if d["unavailable"] == true {
                    self.guilds.insert(id.to_owned(), None);
                } else {
                    self.guilds.remove(id);
                }
            }
            "CHANNEL_CREATE" | "CHANNEL_UPDATE" => self.upsert(guild_id, &CHANNELS, d),
            "CHANNEL_DELETE" => self.remove(guild_id, &CHANNELS, d),
            "THREAD_CREATE" | "THREAD_UPDATE" => self.upsert(guild_id, &THREADS, d),
            "THREAD_DELETE" => self.remove(guild_id, &THREADS, d),
            "GUILD_ROLE_CREATE" | "GUILD_ROLE_UPDATE" => self.upsert(guild_id, &ROLES, &d["role"]),
            "GUILD_ROLE_DELETE" => {
                self.remove(guild_id, &ROLES, &json!({"id": d["role_id"]}));
            }
            "GUILD_EMOJIS_UPDATE" => self.set(guild_id, "emojis", &d["emojis"]),
            "GUILD_STICKERS_UPDATE" => self.set(guild_id, "stickers", &d["stickers"]),
            "GUILD_MEMBER_ADD" => {
                self.count_members(guild_id, 1);
                self.upsert(guild_id, &MEMBERS, d);
            }
            "GUILD_MEMBER_UPDATE" => self.amend(guild_id, &MEMBERS, d),
            "GUILD_MEMBER_REMOVE" => {
                self.count_members(guild_id, -1);
                self.remove(guild_id, &MEMBERS, d);
                self.remove(guild_id, &PRESENCES, d);
            }
            "VOICE_STATE_UPDATE" if d["channel_id"].is_null() => self.remove(guild_id, &VOICE, d),
            "VOICE_STATE_UPDATE" => self.upsert(guild_id, &VOICE, d),
            "PRESENCE_UPDATE" => self.upsert(guild_id, &PRESENCES, d),
            "STAGE_INSTANCE_CREATE" | "STAGE_INSTANCE_UPDATE" => self.upsert(guild_id, &STAGES, d),
            "STAGE_INSTANCE_DELETE" => self.remove(guild_id, &STAGES, d),
            "GUILD_SCHEDULED_EVENT_CREATE" | "GUILD_SCHEDULED_EVENT_UPDATE" => {
                self.upsert(guild_id, &SCHEDULED, d);
            }
            "GUILD_SCHEDULED_EVENT_DELETE" => self.remove(guild_id, &SCHEDULED, d),
            _ => {}
        }
    }

    fn guild(&mut self, id: Option<&str>) -> Option<&mut serde_json::Map<String, Value>> {
        match self.guilds.get_mut(id?)? {
            Some(Value::Object(g)) => Some(g),
            _ => None,
        }
    }

    fn array(&mut self, id: Option<&str>, key: &str) -> Option<&mut Vec<Value>> {
        let guild = self.guild(id)?;
        let array = guild.entry(key).or_insert_with(|| Value::Array(Vec::new()));
        array.as_array_mut()
    }

    /// Puts `item` in place of the entry with its id, or adds it.
    fn upsert(&mut self, guild: Option<&str>, place: &Place, item: &Value) {
        let Some(id) = at(item, place.id) else { return };
        let Some(array) = self.array(guild, place.array) else {
            return;
        };
        let mut item = item.clone();
        // The guild is implied by where the entry is; Discord's GUILD_CREATE leaves it out.
        if let Some(o) = item.as_object_mut() {
            o.remove("guild_id");
        }
        match array.iter_mut().find(|e| at(e, place.id) == Some(id)) {
            Some(entry) => *entry = item,
            None => array.push(item),
        }
    }

    /// Merges `item`'s fields into the entry with its id, if there is one (a member Discord
    /// did not list stays unlisted).
    fn amend(&mut self, guild: Option<&str>, place: &Place, item: &Value) {
        let (Some(id), Some(fields)) = (at(item, place.id), item.as_object()) else {
            return;
        };
        let Some(array) = self.array(guild, place.array) else {
            return;
        };
        if let Some(Value::Object(entry)) = array.iter_mut().find(|e| at(e, place.id) == Some(id)) {
            for (k, v) in fields.iter().filter(|(k, _)| *k != "guild_id") {
                entry.insert(k.clone(), v.clone());
            }
        }
    }

    fn remove(&mut self, guild: Option<&str>, place: &Place, item: &Value) {
        let Some(id) = at(item, place.id).map(str::to_owned) else {
            return;
        };
        if let Some(Value::Array(array)) = self.guild(guild).and_then(|g| g.get_mut(place.array)) {
            array.retain(|e| at(e, place.id) != Some(id.as_str()));
        }
    }

    fn set(&mut self, guild: Option<&str>, key: &str, value: &Value) {
        if let Some(g) = self.guild(guild) {
            g.insert(key.to_owned(), value.clone());
        }
    }

    fn count_members(&mut self, guild: Option<&str>, by: i64) {
        let Some(g) = self.guild(guild) else { return };
        if let Some(n) = g.get("member_count").and_then(Value::as_i64) {
            g.insert("member_count".into(), json!((n + by).max(0)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guild() -> Value {
        json!({
            "id": "1", "name": "ops", "member_count": 2,
            "channels": [{"id": "10", "name": "general", "type": 0}],
            "roles": [{"id": "1", "name": "@everyone"}],
            "members": [{"user": {"id": "7"}, "nick": null}],
            "threads": [], "emojis": [],
        })
    }

    #[test]
    fn the_replayed_guild_is_the_created_one_with_every_change_since() {
        let mut g = Guilds::from_ready(
            &json!({"guilds": [{"id": "1", "unavailable": true}, {"id": "2", "unavailable": true}]}),
        );
        assert_eq!(g.creates().count(), 0, "unavailable until created");
        assert_eq!(g.ready_list().as_array().unwrap().len(), 2);
        g.apply("GUILD_CREATE", &guild());
        g.apply("GUILD_UPDATE", &json!({"id": "1", "name": "ops-renamed"}));
        g.apply(
            "CHANNEL_CREATE",
            &json!({"id": "11", "guild_id": "1", "name": "deploys", "type": 0}),
        );
        g.apply(
            "CHANNEL_UPDATE",
            &json!({"id": "10", "guild_id": "1", "name": "lobby", "type": 0}),
        );
        g.apply(
            "GUILD_ROLE_CREATE",
            &json!({"guild_id": "1", "role": {"id": "5", "name": "owner"}}),
        );
        g.apply(
            "GUILD_ROLE_DELETE",
            &json!({"guild_id": "1", "role_id": "1"}),
        );
        g.apply(
            "GUILD_MEMBER_ADD",
            &json!({"guild_id": "1", "user": {"id": "8"}, "nick": "n"}),
        );
        g.apply(
            "GUILD_MEMBER_UPDATE",
            &json!({"guild_id": "1", "user": {"id": "7"}, "nick": "seven"}),
        );
        g.apply(
            "GUILD_MEMBER_REMOVE",
            &json!({"guild_id": "1", "user": {"id": "8"}}),
        );
        g.apply(
            "GUILD_MEMBER_UPDATE",
            &json!({"guild_id": "1", "user": {"id": "9"}, "nick": "unlisted"}),
        );
        g.apply(
            "THREAD_CREATE",
            &json!({"id": "20", "guild_id": "1", "name": "t"}),
        );
        g.apply("THREAD_DELETE", &json!({"id": "20", "guild_id": "1"}));
        g.apply(
            "GUILD_EMOJIS_UPDATE",
            &json!({"guild_id": "1", "emojis": [{"id": "3"}]}),
        );
        g.apply(
            "VOICE_STATE_UPDATE",
            &json!({"guild_id": "1", "user_id": "7", "channel_id": "10"}),
        );
        g.apply("GUILD_DELETE", &json!({"id": "2"}));
        let created: Vec<&Value> = g.creates().collect();
        assert_eq!(created.len(), 1);
        let want = json!({
            "id": "1", "name": "ops-renamed", "member_count": 2,
            "channels": [{"id": "10", "name": "lobby", "type": 0}, {"id": "11", "name": "deploys", "type": 0}],
            "roles": [{"id": "5", "name": "owner"}],
            "members": [{"user": {"id": "7"}, "nick": "seven"}],
            "threads": [], "emojis": [{"id": "3"}],
            "voice_states": [{"user_id": "7", "channel_id": "10"}],
        });
        assert_eq!(created[0], &want);
        assert_eq!(
            g.ready_list(),
            json!([{"id": "1", "unavailable": true}]),
            "the left guild is gone"
        );
        g.apply(
            "VOICE_STATE_UPDATE",
            &json!({"guild_id": "1", "user_id": "7", "channel_id": null}),
        );
        g.apply("GUILD_DELETE", &json!({"id": "1", "unavailable": true}));
        assert_eq!(g.creates().count(), 0, "an outage makes it unavailable");
        assert_eq!(g.len(), 1, "but still listed");
    }
}
