//! User and group lookup (through NSS, as `getpwnam(3)`/`getgrnam(3)`), written once for
//! `chown-socket` ([`crate::listen`]), rsgid's `uid`/`gid` of vassals, and the `%U`/`%G`
//! magic variables ([`crate::config::Os`]).
//!
//! A spec is a name or a number, as in uWSGI's `uid`, `gid` and `chown-socket`. Two
//! readings of a number exist and both are kept: [`uid_of`]/[`gid_of`] take a number as
//! the id itself (it need not have an entry: `chown-socket = 1234`), while [`user`] looks
//! a number up too, because the caller needs the user's primary group.

use nix::errno::Errno;
use nix::unistd::{Gid, Group, Uid};

/// A user entry: name, uid and primary gid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The login name.
    pub name: String,
    /// The uid.
    pub uid: u32,
    /// The primary group.
    pub gid: u32,
}

impl From<nix::unistd::User> for User {
    fn from(u: nix::unistd::User) -> Self {
        User {
            name: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
        }
    }
}

/// The user `spec` names: a number is a uid, anything else a name; both must have an
/// entry (`Ok(None)` when there is none).
///
/// # Errors
/// The lookup itself failed (NSS error).
pub fn user(spec: &str) -> Result<Option<User>, Errno> {
    match spec.parse::<u32>() {
        Ok(uid) => user_by_uid(uid),
        Err(_) => Ok(nix::unistd::User::from_name(spec)?.map(User::from)),
    }
}

/// The user entry of `uid` (`Ok(None)` when there is none).
///
/// # Errors
/// The lookup itself failed (NSS error).
pub fn user_by_uid(uid: u32) -> Result<Option<User>, Errno> {
    Ok(nix::unistd::User::from_uid(Uid::from_raw(uid))?.map(User::from))
}

/// The uid `spec` names: a number is the uid itself, anything else a user name looked up
/// (`Ok(None)` for an unknown name).
///
/// # Errors
/// The lookup itself failed (NSS error).
pub fn uid_of(spec: &str) -> Result<Option<u32>, Errno> {
    match spec.parse::<u32>() {
        Ok(uid) => Ok(Some(uid)),
        Err(_) => Ok(nix::unistd::User::from_name(spec)?.map(|u| u.uid.as_raw())),
    }
}

/// The gid `spec` names: a number is the gid itself, anything else a group name looked up
/// (`Ok(None)` for an unknown name).
///
/// # Errors
/// The lookup itself failed (NSS error).
pub fn gid_of(spec: &str) -> Result<Option<u32>, Errno> {
    match spec.parse::<u32>() {
        Ok(gid) => Ok(Some(gid)),
        Err(_) => Ok(Group::from_name(spec)?.map(|g| g.gid.as_raw())),
    }
}

/// The name of group `gid` (`Ok(None)` when it has no entry).
///
/// # Errors
/// The lookup itself failed (NSS error).
pub fn group_name(gid: u32) -> Result<Option<String>, Errno> {
    Ok(Group::from_gid(Gid::from_raw(gid))?.map(|g| g.name))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_and_numbers() {
        let me = nix::unistd::getuid().as_raw();
        let mine = user_by_uid(me)
            .unwrap()
            .expect("the test user has an entry");
        assert_eq!(user(&mine.name).unwrap(), Some(mine.clone()));
        assert_eq!(user(&me.to_string()).unwrap(), Some(mine.clone()));
        assert_eq!(uid_of(&mine.name).unwrap(), Some(me));
        let root_group = group_name(0).unwrap().expect("gid 0 has a name");
        // (spec, uid_of, gid_of)
        let cases: &[(&str, Option<u32>, Option<u32>)] = &[
            ("0", Some(0), Some(0)),
            ("4000000000", Some(4_000_000_000), Some(4_000_000_000)),
            ("no-such-name-rsgi", None, None),
        ];
        for &(spec, uid, gid) in cases {
            assert_eq!(uid_of(spec).unwrap(), uid, "uid_of {spec}");
            assert_eq!(gid_of(spec).unwrap(), gid, "gid_of {spec}");
        }
        assert_eq!(gid_of(&root_group).unwrap(), Some(0));
        // A number without an entry is no user for `user`.
        assert_eq!(user("4000000000").unwrap(), None);
        assert_eq!(user("no-such-name-rsgi").unwrap(), None);
    }
}
