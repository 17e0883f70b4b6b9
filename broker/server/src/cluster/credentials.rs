//! SCRAM credentials in the metadata image: what the authenticator looks
//! up, what AlterUserScramCredentials and `--add-scram` change.

use rivulet_quorum::metadata::{MetadataCommand, ScramCredentialRecord};

use super::Cluster;
use crate::{
    broker::ApiError,
    security::scram::{ScramCredential, ScramMechanism},
};

/// The image's form of a credential (the same fields; the types live in
/// crates that do not know each other).
fn to_record(c: &ScramCredential) -> ScramCredentialRecord {
    ScramCredentialRecord {
        salt: c.salt.clone(),
        stored_key: c.stored_key.clone(),
        server_key: c.server_key.clone(),
        iterations: c.iterations,
    }
}

/// The metadata record that sets (`Some`) or deletes (`None`) one credential.
fn alter_command(
    user: &str,
    mechanism: ScramMechanism,
    credential: Option<&ScramCredential>,
) -> MetadataCommand {
    MetadataCommand::AlterScramCredential {
        user: user.to_string(),
        mechanism: mechanism.kafka_type(),
        credential: credential.map(to_record),
    }
}

impl Cluster {
    /// A user's credential for `mechanism`, from the applied image.
    pub fn scram_credential(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> Option<ScramCredential> {
        let image = self.image();
        let record = image.scram.get(user)?.get(&mechanism.kafka_type())?;
        Some(ScramCredential {
            salt: record.salt.clone(),
            stored_key: record.stored_key.clone(),
            server_key: record.server_key.clone(),
            iterations: record.iterations,
        })
    }

    /// Sets (`Some`) or deletes (`None`) credentials of one user, all or
    /// none of them.
    pub async fn alter_scram(
        &self,
        user: &str,
        changes: Vec<(ScramMechanism, Option<ScramCredential>)>,
    ) -> Result<(), ApiError> {
        let commands: Vec<MetadataCommand> = changes
            .iter()
            .map(|(mechanism, credential)| alter_command(user, *mechanism, credential.as_ref()))
            .collect();
        let command = match <[MetadataCommand; 1]>::try_from(commands) {
            Ok([one]) => one,
            Err(many) => MetadataCommand::Batch(many),
        };
        self.propose(command).await
    }

    /// Adds the bootstrap credentials of `--add-scram` when the cluster has
    /// none yet (Kafka's `kafka-storage format --add-scram`): the first
    /// admin can then log in. Ignored once any credential exists, so a
    /// restart with the same flags never resets a changed password.
    pub async fn bootstrap_scram(
        &self,
        credentials: &[(String, ScramMechanism, ScramCredential)],
    ) -> Result<bool, ApiError> {
        if credentials.is_empty() || !self.image().scram.is_empty() {
            return Ok(false);
        }
        let commands = credentials
            .iter()
            .map(|(user, mechanism, c)| alter_command(user, *mechanism, Some(c)))
            .collect();
        self.propose(MetadataCommand::Batch(commands)).await?;
        Ok(true)
    }
}
