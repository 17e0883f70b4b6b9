//! An in-process broker for the server crate's integration tests: started
//! with `server::run` on a free port, stopped through its shutdown future.

#![allow(dead_code)]

use std::{collections::BTreeMap, path::Path};

use rivulet_server::{
    config::{BrokerConfig, ListenerConfig},
    server,
};
use tokio::sync::oneshot;

/// A broker running in this process until dropped or stopped.
pub struct Running {
    /// `host:port` of the Kafka listener.
    pub addr: String,
    /// Every listener by name and bound address.
    pub listeners: Vec<(String, std::net::SocketAddr)>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Starts a broker on `dir` with a zero initial rebalance delay.
    pub async fn start(dir: &Path) -> Running {
        let raw = BTreeMap::from([(
            "group.initial.rebalance.delay.ms".to_string(),
            "0".to_string(),
        )]);
        let config = BrokerConfig::new(
            0,
            vec![ListenerConfig::plaintext("127.0.0.1:0".parse().unwrap())],
            dir.to_path_buf(),
            None,
            raw,
        )
        .unwrap();
        Running::start_with(config).await
    }

    /// Starts a broker with `config`.
    pub async fn start_with(config: BrokerConfig) -> Running {
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready_tx, ready) = oneshot::channel();
        let task = tokio::spawn(async move {
            server::run(
                config,
                async {
                    let _ = stopped.await;
                },
                move |bound| {
                    let _ = ready_tx.send(bound.listeners.clone());
                },
            )
            .await
            .unwrap();
        });
        let listeners: Vec<(String, std::net::SocketAddr)> = ready.await.unwrap();
        Running {
            addr: listeners[0].1.to_string(),
            listeners,
            stop: Some(stop),
            task,
        }
    }

    /// Shuts the broker down cleanly and waits for it.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        (&mut self.task).await.unwrap();
    }
}
