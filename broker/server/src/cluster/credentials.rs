//! SCRAM credentials in the metadata image: what the authenticator looks
//! up, what AlterUserScramCredentials and `--add-scram` change.

use rivulet_quorum::metadata::{MetadataCommand, ScramCredentialRecord};

use super::Cluster;
use crate::{
    broker::ApiError,
    security::scram::{ScramCredential, ScramMechanism},
};

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
            .into_iter()
            .map(
                |(mechanism, credential)| MetadataCommand::AlterScramCredential {
                    user: user.to_string(),
                    mechanism: mechanism.kafka_type(),
                    credential: credential.map(|c| ScramCredentialRecord {
                        salt: c.salt,
                        stored_key: c.stored_key,
                        server_key: c.server_key,
                        iterations: c.iterations,
                    }),
                },
            )
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
            .map(
                |(user, mechanism, c)| MetadataCommand::AlterScramCredential {
                    user: user.clone(),
                    mechanism: mechanism.kafka_type(),
                    credential: Some(ScramCredentialRecord {
                        salt: c.salt.clone(),
                        stored_key: c.stored_key.clone(),
                        server_key: c.server_key.clone(),
                        iterations: c.iterations,
                    }),
                },
            )
            .collect();
        self.propose(MetadataCommand::Batch(commands)).await?;
        Ok(true)
    }
}
