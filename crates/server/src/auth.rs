//! Who calls: bearer tokens, their roles, and what each role may do.
//!
//! A token is shown once, when it is made; the store keeps only its SHA-256. The identity a
//! decision or a cancel is journaled with is the token's name: a request cannot choose it.

use std::sync::Arc;

use chassis_store::{Journal, TokenRecord};
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::problem::Problem;

/// What a token may do; each role may do what the ones before it may.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Also starts, resumes and cancels runs.
    Operator,
    /// Also decides approvals, unknown outcomes and limits.
    Approver,
    /// Also manages tokens and reloads agents.
    Admin,
}

impl Role {
    /// Every role, weakest first.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::Approver, Role::Admin];

    /// The spelling on the command line and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    /// Parses [`Role::as_str`].
    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a request comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The token's name.
    pub name: String,
    /// The token's role.
    pub role: Role,
}

impl Identity {
    /// Refuses unless the caller's role is at least `role`.
    pub fn require(&self, role: Role) -> Result<(), Problem> {
        if self.role >= role {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "token `{}` is a {}; this needs a {role} token",
                self.name, self.role
            )))
        }
    }
}

/// Errors of token management.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The role is not one of the four.
    #[error("unknown role `{0}` (use viewer, operator, approver or admin)")]
    UnknownRole(String),
    /// The name is empty or has characters a name cannot have.
    #[error("token name `{0}` must be 1 to 64 letters, digits, `-`, `_`, `.` or `@`")]
    BadName(String),
    /// The system has no randomness to give.
    #[error("cannot draw a random token from the system")]
    Random,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] chassis_store::Error),
}

/// The SHA-256 of a token, hex: what the store keeps.
pub fn hash(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    hex(digest.as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Makes a token for `name` with `role`, keeps its hash, and returns the token itself: the only
/// time it is ever shown.
pub async fn create(journal: &dyn Journal, name: &str, role: &str) -> Result<String, Error> {
    let role = Role::parse(role).ok_or_else(|| Error::UnknownRole(role.to_string()))?;
    let valid = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
    if !valid {
        return Err(Error::BadName(name.to_string()));
    }
    let mut secret = [0u8; 24];
    ring::rand::SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| Error::Random)?;
    let token = format!("chs_{}", hex(&secret));
    journal
        .put_token(&TokenRecord {
            name: name.to_string(),
            role: role.as_str().to_string(),
            hash: hash(&token),
            created_ms: i64::try_from(journal.clock().now_ms()).unwrap_or(i64::MAX),
            revoked_ms: None,
        })
        .await?;
    Ok(token)
}

/// The identity a presented token stands for, if it is live.
pub async fn identify(journal: &Arc<dyn Journal>, token: &str) -> Result<Identity, Problem> {
    let record = journal
        .find_token(&hash(token))
        .await
        .map_err(Problem::from)?
        .ok_or_else(|| Problem::unauthorized("the token is not valid (revoked, or never made)"))?;
    let role = Role::parse(&record.role)
        .ok_or_else(|| Problem::internal(&format!("token role `{}` unknown", record.role)))?;
    Ok(Identity {
        name: record.name,
        role,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_grow_and_parse() {
        let approver = Identity {
            name: "a".into(),
            role: Role::Approver,
        };
        assert!(approver.require(Role::Operator).is_ok());
        assert!(approver.require(Role::Admin).is_err());
        assert_eq!(Role::parse("viewer"), Some(Role::Viewer));
        assert_eq!(Role::parse("root"), None);
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
