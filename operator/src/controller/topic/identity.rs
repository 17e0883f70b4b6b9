//! Topic identity (pure): is the Kafka topic of a Topic's name the one the
//! Topic created or adopted?
//!
//! A name is not an identity. A topic that vanished (a split brain, a
//! `kafka-topics.sh --delete`) can come back under the same name with
//! another id and none of the data, for example auto-created by a client's
//! Metadata request. `status.topicId` records the id once the operator
//! created or adopted the topic; from then on, a missing topic is
//! `TopicLost` and a topic with another id is `TopicRecreated`, and the
//! operator changes nothing in Kafka until a person says what to do with
//! an annotation naming the id it acts on ([`ACCEPT_TOPIC_ID_ANNOTATION`],
//! [`RECREATE_LOST_TOPIC_ANNOTATION`]). Because the annotation names an id,
//! it acts once: a later loss is reported again, not resolved by a
//! leftover annotation.
//!
//! Brokers that predate topic ids report the nil id; such a topic cannot
//! be told from another of its name and is managed by name, as before.

use kube::ResourceExt;

use crate::{
    controller::kafka::TopicState,
    crd::{Topic, ACCEPT_TOPIC_ID_ANNOTATION, RECREATE_LOST_TOPIC_ANNOTATION},
};

/// Ready reason: the recorded topic no longer exists.
pub const TOPIC_LOST: &str = "TopicLost";
/// Ready reason: a topic of the name exists with another id.
pub const TOPIC_RECREATED: &str = "TopicRecreated";

/// What the Topic's annotations accept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accept<'a> {
    /// A new id to adopt ([`ACCEPT_TOPIC_ID_ANNOTATION`]).
    pub topic_id: Option<&'a str>,
    /// The id of a lost topic to replace ([`RECREATE_LOST_TOPIC_ANNOTATION`]).
    pub recreate_lost: Option<&'a str>,
}

impl<'a> Accept<'a> {
    /// The acceptances in `topic`'s annotations.
    pub fn of(topic: &'a Topic) -> Accept<'a> {
        let get = |key: &str| topic.annotations().get(key).map(|v| v.trim());
        Accept {
            topic_id: get(ACCEPT_TOPIC_ID_ANNOTATION),
            recreate_lost: get(RECREATE_LOST_TOPIC_ANNOTATION),
        }
    }
}

/// How the topic in the cluster relates to the Topic's recorded one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Manage the topic (create it if there is none): no id is recorded
    /// yet, or the cluster's topic has the recorded one.
    Ours,
    /// A person accepted a new identity: manage the topic (create it if
    /// lost) and record its id; `note` is for the Event.
    Accepted {
        /// Event reason.
        reason: &'static str,
        /// What was accepted.
        note: String,
    },
    /// The recorded topic no longer exists.
    Lost {
        /// Its id.
        recorded: String,
    },
    /// A topic of the name exists with another id.
    Recreated {
        /// The id the Topic recorded.
        recorded: String,
        /// The id the cluster reports now.
        found: String,
    },
}

/// Compares the `recorded` id with the topic the cluster has (`found`,
/// `None` when there is none), honouring what `accept` allows.
pub fn check(recorded: Option<&str>, found: Option<&TopicState>, accept: Accept<'_>) -> Identity {
    let Some(recorded) = recorded.and_then(kafka_topic_id) else {
        return Identity::Ours;
    };
    let Some(found) = found else {
        if accept.recreate_lost.and_then(kafka_topic_id).as_ref() == Some(&recorded) {
            return Identity::Accepted {
                reason: "RecreatingLostTopic",
                note: format!(
                    "Creating a new, empty topic in place of lost topic id {recorded}, as annotation {RECREATE_LOST_TOPIC_ANNOTATION} asks"
                ),
            };
        }
        return Identity::Lost { recorded };
    };
    let Some(found) = kafka_topic_id(&found.id) else {
        return Identity::Ours;
    };
    if found == recorded {
        return Identity::Ours;
    }
    if accept.topic_id.and_then(kafka_topic_id).as_ref() == Some(&found) {
        return Identity::Accepted {
            reason: "TopicIdAccepted",
            note: format!(
                "Managing the topic with id {found} in place of {recorded}, as annotation {ACCEPT_TOPIC_ID_ANNOTATION} asks"
            ),
        };
    }
    Identity::Recreated { recorded, found }
}

impl Identity {
    /// The Ready reason and message when the operator must not act, with
    /// the command that resolves it.
    pub fn problem(&self, topic: &Topic) -> Option<(&'static str, String)> {
        let name = topic.kafka_name();
        let annotate = format!(
            "kubectl annotate topic {} -n {}",
            topic.name_any(),
            topic.namespace().unwrap_or_default()
        );
        match self {
            Identity::Ours | Identity::Accepted { .. } => None,
            Identity::Lost { recorded } => Some((
                TOPIC_LOST,
                format!(
                    "Kafka topic {name} (id {recorded}) no longer exists and its data is gone; the operator does not recreate it on its own. To create a new, empty topic: {annotate} {RECREATE_LOST_TOPIC_ANNOTATION}={recorded}"
                ),
            )),
            Identity::Recreated { recorded, found } => Some((
                TOPIC_RECREATED,
                format!(
                    "Kafka topic {name} has id {found}, not {recorded}: it was deleted and created again (for example auto-created by a client), and the data of {recorded} is gone; the operator leaves it alone. To manage the new topic: {annotate} {ACCEPT_TOPIC_ID_ANNOTATION}={found}"
                ),
            )),
        }
    }
}

/// `id` as Kafka prints topic ids (`kafka-topics.sh --describe`): 22
/// characters of URL-safe base64. A hyphenated UUID is converted; any other
/// text is taken as already in Kafka's form. `None` for no id: empty, or
/// the nil id of a broker that predates topic ids.
pub fn kafka_topic_id(id: &str) -> Option<String> {
    let id = id.trim();
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    let is_uuid = id.len() == 36 && hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit());
    if !is_uuid {
        let nil = id == "AAAAAAAAAAAAAAAAAAAAAA";
        return (!id.is_empty() && !nil).then(|| id.to_string());
    }
    let mut bytes = [0u8; 16];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0);
    }
    if bytes.iter().all(|b| *b == 0) {
        return None;
    }
    Some(rivulet_wire::uuid_text::encode(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "dd5c07d1-79d6-49fa-8de8-30754369f06f";
    const KAFKA: &str = "3VwH0XnWSfqN6DB1Q2nwbw";

    fn found(id: &str) -> TopicState {
        TopicState {
            id: id.into(),
            ..TopicState::default()
        }
    }

    #[test]
    fn ids_read_as_kafka_prints_them() {
        assert_eq!(kafka_topic_id(UUID).as_deref(), Some(KAFKA));
        assert_eq!(kafka_topic_id(KAFKA).as_deref(), Some(KAFKA));
        assert_eq!(
            kafka_topic_id("00000000-0000-0000-0000-000000000001").as_deref(),
            Some("AAAAAAAAAAAAAAAAAAAAAQ")
        );
        assert_eq!(
            kafka_topic_id("ffffffff-ffff-ffff-ffff-ffffffffffff").as_deref(),
            Some("_____________________w")
        );
        for none in [
            "",
            "00000000-0000-0000-0000-000000000000",
            "AAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert_eq!(kafka_topic_id(none), None, "{none:?}");
        }
    }

    #[test]
    fn a_topic_without_a_recorded_id_is_created_or_adopted() {
        let none = Accept::default();
        assert_eq!(check(None, None, none), Identity::Ours);
        assert_eq!(check(None, Some(&found(UUID)), none), Identity::Ours);
    }

    #[test]
    fn the_recorded_topic_is_ours_in_either_spelling() {
        let none = Accept::default();
        assert_eq!(check(Some(KAFKA), Some(&found(UUID)), none), Identity::Ours);
        assert_eq!(check(Some(UUID), Some(&found(KAFKA)), none), Identity::Ours);
        // A broker without topic ids cannot tell: managed by name.
        let nil = found("00000000-0000-0000-0000-000000000000");
        assert_eq!(check(Some(KAFKA), Some(&nil), none), Identity::Ours);
    }

    #[test]
    fn a_lost_topic_is_recreated_only_when_its_id_is_named() {
        assert_eq!(
            check(Some(KAFKA), None, Accept::default()),
            Identity::Lost {
                recorded: KAFKA.into()
            }
        );
        let wrong = Accept {
            recreate_lost: Some("someOtherId"),
            topic_id: Some(KAFKA),
        };
        assert!(matches!(
            check(Some(KAFKA), None, wrong),
            Identity::Lost { .. }
        ));
        let named = Accept {
            recreate_lost: Some(KAFKA),
            ..Accept::default()
        };
        assert!(matches!(
            check(Some(KAFKA), None, named),
            Identity::Accepted {
                reason: "RecreatingLostTopic",
                ..
            }
        ));
    }

    #[test]
    fn another_id_is_adopted_only_when_it_is_named() {
        let other = found("AAAAAAAAAAAAAAAAAAAAAQ");
        assert_eq!(
            check(Some(KAFKA), Some(&other), Accept::default()),
            Identity::Recreated {
                recorded: KAFKA.into(),
                found: "AAAAAAAAAAAAAAAAAAAAAQ".into()
            }
        );
        // Recreating the lost one does not cover adopting a stranger, and a
        // leftover acceptance of an earlier id does not either.
        for stale in [
            Accept {
                recreate_lost: Some(KAFKA),
                ..Accept::default()
            },
            Accept {
                topic_id: Some(KAFKA),
                ..Accept::default()
            },
        ] {
            assert!(matches!(
                check(Some(KAFKA), Some(&other), stale),
                Identity::Recreated { .. }
            ));
        }
        let named = Accept {
            topic_id: Some("00000000-0000-0000-0000-000000000001"),
            ..Accept::default()
        };
        assert!(matches!(
            check(Some(KAFKA), Some(&other), named),
            Identity::Accepted {
                reason: "TopicIdAccepted",
                ..
            }
        ));
    }

    #[test]
    fn problems_say_how_to_resolve_them() {
        let topic: Topic = serde_saphyr::from_str(
            "apiVersion: rivulet.dev/v1alpha1
kind: Topic
metadata:
  name: dev-events
  namespace: apps
spec:
  cluster: demo
  partitions: 3
  replicationFactor: 3",
        )
        .unwrap();
        let (reason, message) = Identity::Lost {
            recorded: KAFKA.into(),
        }
        .problem(&topic)
        .unwrap();
        assert_eq!(reason, TOPIC_LOST);
        assert!(
            message.ends_with(&format!(
                "kubectl annotate topic dev-events -n apps rivulet.dev/recreate-lost-topic={KAFKA}"
            )),
            "{message}"
        );
        let (reason, message) = Identity::Recreated {
            recorded: KAFKA.into(),
            found: "new".into(),
        }
        .problem(&topic)
        .unwrap();
        assert_eq!(reason, TOPIC_RECREATED);
        assert!(
            message.ends_with("rivulet.dev/accept-topic-id=new"),
            "{message}"
        );
        assert_eq!(Identity::Ours.problem(&topic), None);
    }
}
