//! `rivulet user`: SCRAM users, like Kafka's `kafka-configs.sh --entity-type
//! users --alter --add-config 'SCRAM-SHA-512=[...]'`.
//!
//! Goes through AlterUserScramCredentials and DescribeUserScramCredentials,
//! so any broker of the cluster takes it. The password is salted and hashed
//! here (as Kafka's tools do); only the salted password crosses the wire and
//! only StoredKey and ServerKey are kept by the cluster.

use anyhow::{bail, Context};
use kafka_protocol::{
    messages::{
        alter_user_scram_credentials_request::ScramCredentialDeletion,
        describe_user_scram_credentials_request::UserName, AlterUserScramCredentialsRequest,
        DescribeUserScramCredentialsRequest,
    },
    protocol::StrBytes,
};
use rivulet_wire::{
    client::{scram_upsertion, Client},
    ClientError,
};

use super::ConnectArgs;
use crate::security::scram::{self, ScramMechanism};

/// `rivulet user ...`
#[derive(clap::Args, Debug)]
pub struct UserArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(clap::Subcommand, Debug)]
enum UserCommand {
    /// Create a SCRAM user, or change its password.
    Add {
        /// The user name.
        name: String,
        /// The password (prefer the environment variable: flags show in `ps`).
        #[arg(long, env = "RIVULET_USER_PASSWORD", hide_env_values = true)]
        password: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512.
        #[arg(long, default_value = "SCRAM-SHA-512")]
        mechanism: String,
        /// PBKDF2 iterations, 4096 to 16384.
        #[arg(long, default_value_t = scram::MIN_ITERATIONS)]
        iterations: u32,
    },
    /// List SCRAM users with their mechanisms and iteration counts.
    List,
    /// Remove a user's SCRAM credentials (every mechanism unless one is named).
    Remove {
        /// The user name.
        name: String,
        /// Only this mechanism.
        #[arg(long)]
        mechanism: Option<String>,
    },
}

fn mechanism(name: &str) -> anyhow::Result<ScramMechanism> {
    ScramMechanism::from_name(name)
        .with_context(|| format!("`{name}` is not SCRAM-SHA-256 or SCRAM-SHA-512"))
}

/// Runs `rivulet user`.
pub async fn run(args: UserArgs) -> anyhow::Result<()> {
    let mut client = args.connect.client().await?;
    match args.command {
        UserCommand::Add {
            name,
            password,
            mechanism: m,
            iterations,
        } => {
            let m = mechanism(&m)?;
            scram::check_iterations(iterations)?;
            if password.is_empty() {
                bail!("the password is empty");
            }
            let upsertion =
                scram_upsertion(&name, m, &password, iterations).context("random salt")?;
            alter(
                &mut client,
                AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsertion]),
            )
            .await?;
            println!("user {name}: {} credential set", m.name());
        }
        UserCommand::List => {
            let response = client
                .send_any(DescribeUserScramCredentialsRequest::default().with_users(None))
                .await
                .context("describe SCRAM users")?;
            ClientError::check(response.error_code, response.error_message.as_deref())?;
            println!("{:<24} {:<14} ITERATIONS", "USER", "MECHANISM");
            for user in response.results {
                for info in user.credential_infos {
                    let name = ScramMechanism::from_kafka_type(info.mechanism)
                        .map_or("UNKNOWN", ScramMechanism::name);
                    println!(
                        "{:<24} {:<14} {}",
                        user.user.as_str(),
                        name,
                        info.iterations
                    );
                }
            }
        }
        UserCommand::Remove { name, mechanism: m } => {
            let mechanisms = match m {
                Some(m) => vec![mechanism(&m)?],
                None => {
                    let response = client
                        .send_any(
                            DescribeUserScramCredentialsRequest::default()
                                .with_users(Some(vec![UserName::default()
                                    .with_name(StrBytes::from_string(name.clone()))])),
                        )
                        .await
                        .context("describe the user")?;
                    let result = response
                        .results
                        .into_iter()
                        .next()
                        .context("the broker described no user")?;
                    ClientError::check(result.error_code, result.error_message.as_deref())
                        .with_context(|| format!("user {name}"))?;
                    result
                        .credential_infos
                        .iter()
                        .filter_map(|i| ScramMechanism::from_kafka_type(i.mechanism))
                        .collect()
                }
            };
            let deletions = mechanisms
                .iter()
                .map(|m| {
                    ScramCredentialDeletion::default()
                        .with_name(StrBytes::from_string(name.clone()))
                        .with_mechanism(m.kafka_type())
                })
                .collect();
            alter(
                &mut client,
                AlterUserScramCredentialsRequest::default().with_deletions(deletions),
            )
            .await?;
            println!("user {name}: removed");
        }
    }
    Ok(())
}

async fn alter(
    client: &mut Client,
    request: AlterUserScramCredentialsRequest,
) -> anyhow::Result<()> {
    let response = client
        .send_any(request)
        .await
        .context("alter SCRAM credentials")?;
    for result in response.results {
        ClientError::check(result.error_code, result.error_message.as_deref())
            .with_context(|| format!("user {}", result.user.as_str()))?;
    }
    Ok(())
}
