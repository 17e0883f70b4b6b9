//! The security part of the image: SCRAM credentials (and, as they come,
//! ACLs and client quotas), replicated by the quorum like topics so every
//! broker enforces the same ones.
//!
//! A credential is what RFC 5802 lets a server keep instead of the
//! password: salt, iteration count, StoredKey and ServerKey. Nothing here
//! can recover a password.

use serde::{Deserialize, Serialize};

use super::{
    acl::{self, AclBinding},
    command::{ApplyError, ApplyOutcome, ApplyResult},
    types::ClusterMetadata,
};

/// A user's SCRAM credential for one mechanism.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredentialRecord {
    /// The salt the client hashes the password with.
    pub salt: Vec<u8>,
    /// H(ClientKey), to check the client's proof.
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key"), to sign the server's answer.
    pub server_key: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: u32,
}

impl ClusterMetadata {
    /// Sets (`Some`) or deletes (`None`) one credential. `mechanism` is
    /// Kafka's ScramMechanism code (1 SHA-256, 2 SHA-512).
    pub(super) fn alter_scram(
        &mut self,
        user: &str,
        mechanism: i8,
        credential: Option<&ScramCredentialRecord>,
    ) -> ApplyResult {
        if user.is_empty() {
            return Err(ApplyError::InvalidScram("the user name is empty".into()));
        }
        if !matches!(mechanism, 1 | 2) {
            return Err(ApplyError::InvalidScram(format!(
                "unknown SCRAM mechanism {mechanism}"
            )));
        }
        match credential {
            Some(credential) => {
                let slot = self.scram.entry(user.to_string()).or_default();
                if slot.get(&mechanism) == Some(credential) {
                    return Ok(ApplyOutcome::Unchanged);
                }
                slot.insert(mechanism, credential.clone());
                Ok(ApplyOutcome::Applied)
            }
            None => {
                let removed = self
                    .scram
                    .get_mut(user)
                    .and_then(|slot| slot.remove(&mechanism));
                if removed.is_none() {
                    return Err(ApplyError::UnknownScramCredential {
                        user: user.to_string(),
                        mechanism,
                    });
                }
                if self.scram.get(user).is_some_and(|s| s.is_empty()) {
                    self.scram.remove(user);
                }
                Ok(ApplyOutcome::Applied)
            }
        }
    }
}

impl ClusterMetadata {
    /// Adds ACLs: every one is validated first, so an invalid one adds
    /// none. Existing ones are left as they are.
    pub(super) fn create_acls(&mut self, acls: &[AclBinding]) -> ApplyResult {
        for binding in acls {
            acl::validate(binding)?;
        }
        let before = self.acls.len();
        self.acls.extend(acls.iter().cloned());
        Ok(if self.acls.len() == before {
            ApplyOutcome::Unchanged
        } else {
            ApplyOutcome::Applied
        })
    }

    /// Removes these exact ACLs; ones already gone are skipped (a
    /// concurrent DeleteAcls may have taken them).
    pub(super) fn delete_acls(&mut self, acls: &[AclBinding]) -> ApplyResult {
        let removed = acls.iter().filter(|a| self.acls.remove(a)).count();
        Ok(if removed == 0 {
            ApplyOutcome::Unchanged
        } else {
            ApplyOutcome::Applied
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::MetadataCommand;

    fn credential(salt: u8) -> ScramCredentialRecord {
        ScramCredentialRecord {
            salt: vec![salt; 16],
            stored_key: vec![1; 32],
            server_key: vec![2; 32],
            iterations: 4096,
        }
    }

    fn alter(user: &str, mechanism: i8, c: Option<ScramCredentialRecord>) -> MetadataCommand {
        MetadataCommand::AlterScramCredential {
            user: user.into(),
            mechanism,
            credential: c,
        }
    }

    #[test]
    fn credentials_are_set_replaced_and_deleted() {
        let mut md = ClusterMetadata::default();
        assert_eq!(
            md.apply(1, &alter("alice", 2, Some(credential(1)))),
            Ok(ApplyOutcome::Applied)
        );
        assert_eq!(
            md.apply(2, &alter("alice", 2, Some(credential(1)))),
            Ok(ApplyOutcome::Unchanged)
        );
        assert_eq!(
            md.apply(3, &alter("alice", 1, Some(credential(3)))),
            Ok(ApplyOutcome::Applied)
        );
        assert_eq!(md.scram["alice"].len(), 2);
        assert_eq!(
            md.apply(4, &alter("alice", 2, None)),
            Ok(ApplyOutcome::Applied)
        );
        assert_eq!(
            md.apply(5, &alter("alice", 1, None)),
            Ok(ApplyOutcome::Applied)
        );
        assert!(md.scram.is_empty(), "a user without credentials is gone");
        assert_eq!(
            md.apply(6, &alter("alice", 1, None)),
            Err(ApplyError::UnknownScramCredential {
                user: "alice".into(),
                mechanism: 1
            })
        );
    }

    #[test]
    fn bad_alterations_are_refused_and_change_nothing() {
        let mut md = ClusterMetadata::default();
        assert!(md.apply(1, &alter("", 1, Some(credential(1)))).is_err());
        assert!(md.apply(2, &alter("bob", 3, Some(credential(1)))).is_err());
        assert!(md.scram.is_empty());
    }

    #[test]
    fn an_image_without_credentials_still_loads() {
        let md: ClusterMetadata =
            serde_json::from_str(r#"{"offset":3,"brokers":{},"topics":{}}"#).unwrap();
        assert!(md.scram.is_empty());
        assert!(md.acls.is_empty());
    }

    fn binding(principal: &str, name: &str) -> AclBinding {
        use acl::{Operation, PatternType, Permission, ResourceType};
        AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: name.into(),
            pattern_type: PatternType::Prefixed,
            principal: principal.into(),
            host: "*".into(),
            operation: Operation::Read,
            permission: Permission::Allow,
        }
    }

    #[test]
    fn acls_are_added_once_and_deleted_exactly() {
        let mut md = ClusterMetadata::default();
        let alice = binding("User:alice", "orders-");
        let bob = binding("User:bob", "orders-");
        let create = MetadataCommand::CreateAcls(vec![alice.clone(), bob.clone()]);
        assert_eq!(md.apply(1, &create), Ok(ApplyOutcome::Applied));
        assert_eq!(md.apply(2, &create), Ok(ApplyOutcome::Unchanged));
        assert_eq!(md.acls.len(), 2);
        let delete = MetadataCommand::DeleteAcls(vec![alice.clone()]);
        assert_eq!(md.apply(3, &delete), Ok(ApplyOutcome::Applied));
        assert_eq!(md.apply(4, &delete), Ok(ApplyOutcome::Unchanged));
        assert_eq!(md.acls.iter().collect::<Vec<_>>(), vec![&bob]);
        let json = serde_json::to_string(&md).unwrap();
        let back: ClusterMetadata = serde_json::from_str(&json).unwrap();
        assert_eq!(back.acls, md.acls, "ACLs survive a snapshot");
    }

    #[test]
    fn one_invalid_acl_adds_none() {
        let mut md = ClusterMetadata::default();
        let good = binding("User:alice", "orders-");
        let bad = binding("alice", "orders-");
        let result = md.apply(1, &MetadataCommand::CreateAcls(vec![good, bad]));
        assert!(
            matches!(result, Err(ApplyError::InvalidAcl(_))),
            "{result:?}"
        );
        assert!(md.acls.is_empty());
    }
}
