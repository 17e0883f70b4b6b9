//! A private network for fault tests: each node in its own network
//! namespace, joined by veth pairs to one bridge, with links that can be cut,
//! made one-way, lossy or slow, and healed.
//!
//! Nothing touches the machine's own network. [`PrivateNet::create`] first
//! moves the calling thread into a fresh, unnamed network namespace (the
//! "test namespace": `unshare(CLONE_NEWNET)` affects only that thread, the
//! threads it starts and the processes it spawns); the bridge and the test's
//! address live there and vanish with it. Each node gets a named namespace
//! (`ip netns`), its veth's other end on the bridge, and an address on the
//! private subnet `10.99.0.0/24`: the test namespace is `10.99.0.1`, node
//! `i` is `10.99.0.(10 + i)`. Clients started by the test (and the test's own
//! connections) come from `10.99.0.1`, so "cut a broker off from the other
//! brokers but not from clients" is a rule about source addresses.
//!
//! Faults are nftables rules in the node's namespace (a table `chaos` with
//! input and output chains; `drop`, so a cut looks like a dead link, not a
//! refused connection) and a `tbf` queue on its veth for a slow link. The
//! kernel here has no `netem`: delay comes from a rate limit's queue rather
//! than a fixed latency. [`PrivateNet::heal`] flushes every rule.
//!
//! Root (CAP_NET_ADMIN and CAP_SYS_ADMIN) is needed; [`PrivateNet::available`]
//! says why not when it is missing, and callers skip with that message.

use std::{
    fmt,
    net::Ipv4Addr,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

/// The test namespace's address on the bridge: where clients come from.
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);

/// The bridge inside the test namespace.
const BRIDGE: &str = "rvbr";

/// One named namespace per node; names are unique per process and run.
static NEXT_NET: AtomicU32 = AtomicU32::new(0);

/// A link fault between two endpoints (a node or the clients).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Node `i` of the network.
    Node(usize),
    /// The test namespace: every client and the test's own connections.
    Clients,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Node(i) => write!(f, "node {i}"),
            Endpoint::Clients => f.write_str("clients"),
        }
    }
}

/// The private network of one test; removed on drop.
#[derive(Debug)]
pub struct PrivateNet {
    /// Names of the nodes' namespaces, by node index.
    namespaces: Vec<String>,
}

impl PrivateNet {
    /// `Err(why)` when this process cannot build private networks (not root,
    /// `ip`/`nft` missing, namespaces not permitted).
    pub fn available() -> Result<(), String> {
        // SAFETY: geteuid has no preconditions and only reads the process's
        // credentials.
        if unsafe { libc::geteuid() } != 0 {
            return Err("network namespaces need root".to_string());
        }
        for tool in ["ip", "nft", "tc"] {
            if !crate::tools::on_path(tool) {
                return Err(format!("`{tool}` is not installed"));
            }
        }
        Ok(())
    }

    /// Moves the calling thread into a new network namespace and builds a
    /// bridge with `nodes` namespaces on it. Call it from the thread that
    /// will spawn the nodes and clients.
    pub fn create(nodes: usize) -> Result<PrivateNet, String> {
        Self::available()?;
        // SAFETY: unshare(CLONE_NEWNET) changes only the calling thread's
        // network namespace; no memory is shared with the call.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(format!(
                "unshare(CLONE_NEWNET): {}",
                std::io::Error::last_os_error()
            ));
        }
        sh(&["ip", "link", "set", "lo", "up"])?;
        sh(&["ip", "link", "add", BRIDGE, "type", "bridge"])?;
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{CLIENT_ADDR}/24"),
            "dev",
            BRIDGE,
        ])?;
        sh(&["ip", "link", "set", BRIDGE, "up"])?;
        remove_stale();
        let run = NEXT_NET.fetch_add(1, Ordering::Relaxed);
        let mut net = PrivateNet {
            namespaces: Vec::new(),
        };
        for i in 0..nodes {
            let name = format!("rvchaos-{}-{run}-{i}", std::process::id());
            net.add_node(&name, i)?;
        }
        Ok(net)
    }

    fn add_node(&mut self, name: &str, i: usize) -> Result<(), String> {
        // A namespace left by a crashed earlier run of this pid is stale.
        let _ = sh(&["ip", "netns", "del", name]);
        sh(&["ip", "netns", "add", name])?;
        self.namespaces.push(name.to_string());
        let host_end = format!("rvv{i}");
        sh(&[
            "ip", "link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns", name,
        ])?;
        sh(&["ip", "link", "set", &host_end, "master", BRIDGE, "up"])?;
        let addr = format!("{}/24", Self::node_addr(i));
        in_ns(name, &["ip", "link", "set", "lo", "up"])?;
        in_ns(name, &["ip", "addr", "add", &addr, "dev", "eth0"])?;
        in_ns(name, &["ip", "link", "set", "eth0", "up"])?;
        in_ns(
            name,
            &[
                "nft",
                "add table inet chaos; \
                 add chain inet chaos input { type filter hook input priority 0; }; \
                 add chain inet chaos output { type filter hook output priority 0; }",
            ],
        )
    }

    /// Node `i`'s address.
    pub fn node_addr(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 99, 0, 10 + i as u8)
    }

    /// How many nodes the network has.
    pub fn len(&self) -> usize {
        self.namespaces.len()
    }

    /// Whether the network has no nodes.
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
    }

    /// Node `i`'s namespace name, for `ip netns exec`.
    pub fn namespace(&self, i: usize) -> &str {
        &self.namespaces[i]
    }

    /// A command that runs `program` inside node `i`'s namespace. `ip netns
    /// exec` execs the program, so the child's pid is the program's.
    pub fn command(&self, i: usize, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.namespace(i), program]);
        cmd
    }

    fn addr(e: Endpoint) -> Ipv4Addr {
        match e {
            Endpoint::Node(i) => Self::node_addr(i),
            Endpoint::Clients => CLIENT_ADDR,
        }
    }

    /// Drops every packet from `from` to `to` (a one-way link: replies
    /// still flow). Applied in `to`'s namespace, or in `from`'s output when
    /// `to` is the clients.
    pub fn drop_one_way(&self, from: Endpoint, to: Endpoint) -> Result<(), String> {
        self.drop_matching(from, to, "")
    }

    /// Drops `percent` of the packets from `from` to `to`.
    pub fn lossy_one_way(&self, from: Endpoint, to: Endpoint, percent: u8) -> Result<(), String> {
        self.drop_matching(from, to, &format!("numgen random mod 100 < {percent}"))
    }

    fn drop_matching(&self, from: Endpoint, to: Endpoint, extra: &str) -> Result<(), String> {
        let (ns, chain, field, peer) = match (from, to) {
            (_, Endpoint::Node(i)) => (i, "input", "saddr", Self::addr(from)),
            (Endpoint::Node(i), Endpoint::Clients) => (i, "output", "daddr", CLIENT_ADDR),
            (Endpoint::Clients, Endpoint::Clients) => return Ok(()),
        };
        in_ns(
            self.namespace(ns),
            &[
                "nft",
                &format!("add rule inet chaos {chain} ip {field} {peer} {extra} drop"),
            ],
        )
    }

    /// Cuts the link between `a` and `b` both ways.
    pub fn cut(&self, a: Endpoint, b: Endpoint) -> Result<(), String> {
        self.drop_one_way(a, b)?;
        self.drop_one_way(b, a)
    }

    /// Cuts node `i` off from every other node, but not from clients.
    pub fn isolate_from_nodes(&self, i: usize) -> Result<(), String> {
        for other in (0..self.len()).filter(|&o| o != i) {
            self.cut(Endpoint::Node(i), Endpoint::Node(other))?;
        }
        Ok(())
    }

    /// Splits the nodes into `side` and the rest; clients reach both.
    pub fn split(&self, side: &[usize]) -> Result<(), String> {
        for &a in side {
            for b in (0..self.len()).filter(|b| !side.contains(b)) {
                self.cut(Endpoint::Node(a), Endpoint::Node(b))?;
            }
        }
        Ok(())
    }

    /// Limits node `i`'s outgoing traffic to `kbit` kbit/s; packets wait in
    /// a queue of up to `latency_ms` (the slow-link stand-in for netem).
    pub fn slow(&self, i: usize, kbit: u32, latency_ms: u32) -> Result<(), String> {
        in_ns(
            self.namespace(i),
            &[
                "tc",
                "qdisc",
                "replace",
                "dev",
                "eth0",
                "root",
                "tbf",
                "rate",
                &format!("{kbit}kbit"),
                "burst",
                "32kbit",
                "latency",
                &format!("{latency_ms}ms"),
            ],
        )
    }

    /// Removes every fault: all rules, all queues.
    pub fn heal(&self) -> Result<(), String> {
        for ns in &self.namespaces {
            in_ns(
                ns,
                &[
                    "nft",
                    "flush chain inet chaos input; flush chain inet chaos output",
                ],
            )?;
            // No queue is not an error.
            let _ = in_ns(ns, &["tc", "qdisc", "del", "dev", "eth0", "root"]);
        }
        Ok(())
    }

    /// The nftables rules of node `i` (for failure messages).
    pub fn rules(&self, i: usize) -> String {
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            self.namespace(i),
            "nft",
            "list",
            "table",
            "inet",
            "chaos",
        ]);
        cmd.output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_else(|e| format!("(nft list failed: {e})"))
    }
}

impl Drop for PrivateNet {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
    }
}

/// Removes the namespaces (and kills the processes in them) that a run
/// which died without cleaning up left behind: their names carry the pid of
/// the process that made them.
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(owner) = name
            .strip_prefix("rvchaos-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if crate::cluster::pid_alive(owner) {
            continue;
        }
        if let Ok(pids) = Command::new("ip").args(["netns", "pids", name]).output() {
            for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    // SAFETY: kill() only sends a signal.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
        }
        let _ = sh(&["ip", "netns", "del", name]);
    }
}

/// Runs `args[0]` with the rest as arguments; `Err` with its stderr unless
/// it exits 0.
fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{args:?} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn in_ns(ns: &str, args: &[&str]) -> Result<(), String> {
    let mut all = vec!["ip", "netns", "exec", ns];
    all.extend_from_slice(args);
    sh(&all)
}
