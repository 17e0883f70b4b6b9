//! An in-process broker for the server crate's integration tests: started
//! with `server::run` on a free port, stopped through its shutdown future.

#![allow(dead_code)]

use std::{collections::BTreeMap, path::Path};

use rivulet_server::{config::BrokerConfig, server};
use tokio::sync::oneshot;

/// A broker running in this process until dropped or stopped.
pub struct Running {
    /// `host:port` of the Kafka listener.
    pub addr: String,
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
            "127.0.0.1:0".parse().unwrap(),
            None,
            dir.to_path_buf(),
            None,
            raw,
        )
        .unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready_tx, ready) = oneshot::channel();
        let task = tokio::spawn(async move {
            server::run(
                config,
                async {
                    let _ = stopped.await;
                },
                move |bound| {
                    let _ = ready_tx.send(bound.kafka);
                },
            )
            .await
            .unwrap();
        });
        let addr = ready.await.unwrap().to_string();
        Running {
            addr,
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
