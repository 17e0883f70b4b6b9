//! DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554):
//! SCRAM users in the metadata image. Describe shows mechanisms and
//! iteration counts, never salts or keys. Alter takes what Kafka's clients
//! send, a salt and the salted password, and stores only the derived
//! StoredKey and ServerKey.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::{
    messages::{
        alter_user_scram_credentials_response::AlterUserScramCredentialsResult,
        describe_user_scram_credentials_response::{
            CredentialInfo, DescribeUserScramCredentialsResult,
        },
        AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
        DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
    },
    protocol::StrBytes,
    ResponseError,
};

use super::Node;
use crate::security::scram::{self, ScramCredential, ScramMechanism};

fn text(s: impl Into<String>) -> Option<StrBytes> {
    Some(StrBytes::from_string(s.into()))
}

/// Handles DescribeUserScramCredentials: every user when `users` is null
/// or empty, as in Kafka.
pub fn describe(
    node: &Node,
    request: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let image = node.cluster.image();
    let mut response = DescribeUserScramCredentialsResponse::default();
    let info = |user: &str| -> Option<Vec<CredentialInfo>> {
        let creds = image.scram.get(user)?;
        Some(
            creds
                .iter()
                .map(|(mechanism, c)| {
                    CredentialInfo::default()
                        .with_mechanism(*mechanism)
                        .with_iterations(c.iterations as i32)
                })
                .collect(),
        )
    };
    match request.users.filter(|users| !users.is_empty()) {
        None => {
            for user in image.scram.keys() {
                response.results.push(
                    DescribeUserScramCredentialsResult::default()
                        .with_user(StrBytes::from_string(user.clone()))
                        .with_credential_infos(info(user).unwrap_or_default()),
                );
            }
        }
        Some(users) => {
            let mut seen = BTreeMap::<String, usize>::new();
            for u in &users {
                *seen.entry(u.name.to_string()).or_default() += 1;
            }
            for (user, count) in seen {
                let mut result = DescribeUserScramCredentialsResult::default()
                    .with_user(StrBytes::from_string(user.clone()));
                if count > 1 {
                    result.error_code = ResponseError::DuplicateResource.code();
                    result.error_message = text(format!("user {user} is named more than once"));
                } else if let Some(infos) = info(&user) {
                    result.credential_infos = infos;
                } else {
                    result.error_code = ResponseError::ResourceNotFound.code();
                    result.error_message = text(format!(
                        "attempt to describe a user credential that does not exist: {user}"
                    ));
                }
                response.results.push(result);
            }
        }
    }
    response
}

/// One user's alterations after validation.
type Changes = Vec<(ScramMechanism, Option<ScramCredential>)>;

/// Handles AlterUserScramCredentials: each user's changes apply together or
/// not at all, and each user gets a result.
pub async fn alter(
    node: &Node,
    request: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let mut per_user: BTreeMap<String, Result<Changes, (ResponseError, String)>> = BTreeMap::new();
    let mut named = BTreeSet::new();
    let mut duplicate = BTreeSet::new();
    let keys = request
        .deletions
        .iter()
        .map(|d| (d.name.to_string(), d.mechanism))
        .chain(
            request
                .upsertions
                .iter()
                .map(|u| (u.name.to_string(), u.mechanism)),
        );
    for key in keys {
        if !named.insert(key.clone()) {
            duplicate.insert(key.0);
        }
    }
    let mut record = |user: String,
                      change: Result<
        (ScramMechanism, Option<ScramCredential>),
        (ResponseError, String),
    >| {
        let entry = per_user.entry(user).or_insert_with(|| Ok(Vec::new()));
        match (entry.as_mut(), change) {
            (Ok(list), Ok(c)) => list.push(c),
            (Ok(_), Err(e)) => *entry = Err(e),
            (Err(_), _) => {}
        }
    };
    for d in &request.deletions {
        let user = d.name.to_string();
        record(
            user.clone(),
            validate_user(&user)
                .and_then(|()| mechanism(d.mechanism))
                .map(|m| (m, None)),
        );
    }
    for u in &request.upsertions {
        let user = u.name.to_string();
        let change = validate_user(&user)
            .and_then(|()| mechanism(u.mechanism))
            .and_then(|m| {
                let iterations = u32::try_from(u.iterations).unwrap_or(0);
                scram::check_iterations(iterations)
                    .map_err(|e| (ResponseError::UnacceptableCredential, e.to_string()))?;
                if u.salt.is_empty() || u.salted_password.is_empty() {
                    return Err((
                        ResponseError::UnacceptableCredential,
                        "the salt and the salted password must not be empty".to_string(),
                    ));
                }
                Ok((
                    m,
                    Some(ScramCredential::from_salted_password(
                        m,
                        &u.salt,
                        &u.salted_password,
                        iterations,
                    )),
                ))
            });
        record(user, change);
    }
    let mut response = AlterUserScramCredentialsResponse::default();
    for (user, changes) in per_user {
        let outcome = if duplicate.contains(&user) {
            Err((
                ResponseError::DuplicateResource,
                format!("a credential of {user} is altered more than once in one request"),
            ))
        } else {
            match changes {
                Ok(changes) => node
                    .cluster
                    .alter_scram(&user, changes)
                    .await
                    .map_err(|e| (e.code, e.message)),
                Err(e) => Err(e),
            }
        };
        let mut result = AlterUserScramCredentialsResult::default();
        result.user = StrBytes::from_string(user);
        if let Err((code, message)) = outcome {
            result.error_code = code.code();
            result.error_message = text(message);
        }
        response.results.push(result);
    }
    response
}

fn validate_user(user: &str) -> Result<(), (ResponseError, String)> {
    if user.is_empty() {
        return Err((
            ResponseError::UnacceptableCredential,
            "the user name is empty".into(),
        ));
    }
    Ok(())
}

fn mechanism(code: i8) -> Result<ScramMechanism, (ResponseError, String)> {
    ScramMechanism::from_kafka_type(code).ok_or_else(|| {
        (
            ResponseError::UnsupportedSaslMechanism,
            format!("unknown SCRAM mechanism {code}"),
        )
    })
}
