//! InitProducerId: for idempotent producers a fresh producer id with epoch
//! 0, or (KIP-360) the same id with a bumped epoch when the producer asks
//! to continue after an error; with a transactional id, the transaction
//! coordinator's producer id and epoch (fencing older producers of that
//! id, aborting a transaction they left open).

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::Node;

/// Answers InitProducerId.
pub async fn handle(broker: &Node, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let continuing = (req.producer_id.0 >= 0 && req.producer_epoch >= 0)
        .then_some((req.producer_id.0, req.producer_epoch));
    if let Some(id) = req.transactional_id.as_ref().filter(|id| !id.is_empty()) {
        return match broker
            .txns
            .init_producer_id(id, req.transaction_timeout_ms, continuing)
            .await
        {
            Ok((pid, epoch)) => resp
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch),
            Err(e) => resp.with_error_code(e.code()),
        };
    }
    // KIP-360: a known producer asking to continue gets its epoch bumped;
    // once the epoch is exhausted it starts over with a new id, as in Kafka.
    if let Some((pid, epoch)) = continuing.filter(|(_, e)| *e < i16::MAX - 1) {
        return resp
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch + 1);
    }
    match broker.allocate_producer_id() {
        Ok(id) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => resp.with_error_code(e.code.code()),
    }
}
