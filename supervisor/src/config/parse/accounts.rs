//! Users and groups named in the configuration, looked up in the system's databases.

use crate::config::UserSpec;

/// Looks a group up by name or numeric gid.
pub(super) fn resolve_group(spec: &str) -> Result<u32, String> {
    use nix::unistd::{Gid, Group};
    match spec.parse::<u32>() {
        Ok(gid) => Group::from_gid(Gid::from_raw(gid)),
        Err(_) => Group::from_name(spec),
    }
    .map_err(|e| format!("cannot look up group \"{spec}\": {e}"))?
    .map(|g| g.gid.as_raw())
    .ok_or_else(|| format!("unknown group \"{spec}\""))
}

pub(crate) fn resolve_user(spec: &str) -> Result<UserSpec, String> {
    use nix::unistd::{Uid, User, getgrouplist};
    let user = match spec.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)),
        Err(_) => User::from_name(spec),
    }
    .map_err(|e| format!("cannot look up user \"{spec}\": {e}"))?
    .ok_or_else(|| format!("unknown user \"{spec}\" (create it, or give a uid)"))?;
    let groups = std::ffi::CString::new(user.name.clone())
        .ok()
        .and_then(|name| getgrouplist(&name, user.gid).ok())
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_else(|| vec![user.gid.as_raw()]);
    Ok(UserSpec {
        name: user.name,
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        groups,
        home: user.dir.to_string_lossy().into_owned(),
    })
}
