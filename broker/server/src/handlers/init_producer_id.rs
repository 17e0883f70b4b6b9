//! InitProducerId for idempotent producers: a fresh producer id with epoch 0,
//! or (KIP-360) the same id with a bumped epoch when the producer asks to
//! continue after an error. Transactions are not supported yet.

use kafka_protocol::{
    messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId},
    ResponseError,
};

use super::Node;

/// Answers InitProducerId.
pub fn handle(broker: &Node, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if req.transactional_id.is_some() {
        // Without a transaction coordinator the honest answer is a refusal
        // the client reports, not a producer that fails later.
        return resp.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    // KIP-360: a known producer asking to continue gets its epoch bumped;
    // once the epoch is exhausted it starts over with a new id, as in Kafka.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        return resp
            .with_producer_id(req.producer_id)
            .with_producer_epoch(req.producer_epoch + 1);
    }
    match broker.allocate_producer_id() {
        Ok(id) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => resp.with_error_code(e.code.code()),
    }
}
