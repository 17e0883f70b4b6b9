//! The client's SASL login (SaslHandshake v1, then SaslAuthenticate):
//! PLAIN, or SCRAM with the server's signature checked, so a client never
//! talks to a broker that does not know its credential.

use bytes::Bytes;
use kafka_protocol::{
    messages::{SaslAuthenticateRequest, SaslHandshakeRequest},
    protocol::StrBytes,
};

use super::{connection::Connection, security::SaslLogin};
use crate::{
    error::ClientError,
    scram::{ScramClient, ScramMechanism},
};

fn failed(conn: &Connection, reason: impl Into<String>) -> ClientError {
    ClientError::Authentication {
        addr: conn.addr().to_owned(),
        reason: reason.into(),
    }
}

/// One SaslAuthenticate round: the server's answer bytes.
async fn round(conn: &mut Connection, bytes: Vec<u8>) -> Result<Bytes, ClientError> {
    let response = conn
        .send(SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes)))
        .await?;
    if response.error_code != 0 {
        let reason = response
            .error_message
            .map(|m| m.to_string())
            .unwrap_or_else(|| format!("error code {}", response.error_code));
        return Err(failed(conn, reason));
    }
    Ok(response.auth_bytes)
}

/// Logs in on a connection that has negotiated versions.
pub async fn login(conn: &mut Connection, login: &SaslLogin) -> Result<(), ClientError> {
    let handshake = conn
        .send(
            SaslHandshakeRequest::default()
                .with_mechanism(StrBytes::from_string(login.mechanism.clone())),
        )
        .await?;
    if handshake.error_code != 0 {
        let offered: Vec<String> = handshake.mechanisms.iter().map(|m| m.to_string()).collect();
        return Err(failed(
            conn,
            format!(
                "the broker does not offer {} (it offers: {})",
                login.mechanism,
                offered.join(", ")
            ),
        ));
    }
    match ScramMechanism::from_name(&login.mechanism) {
        None => {
            let token = format!("\0{}\0{}", login.username, login.password).into_bytes();
            round(conn, token).await?;
        }
        Some(mechanism) => {
            let mut client = ScramClient::new(mechanism, &login.username, &login.password);
            let server_first = round(conn, client.client_first()).await?;
            let client_final = client
                .client_final(&server_first)
                .map_err(|e| failed(conn, e.to_string()))?;
            let server_final = round(conn, client_final).await?;
            client
                .verify_server_final(&server_final)
                .map_err(|e| failed(conn, e.to_string()))?;
        }
    }
    Ok(())
}
