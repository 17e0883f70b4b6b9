//! The CA state machine driven through every phase against a simulated
//! world: a brokers' certificate Secret the controller re-issues from the
//! stored CA, and brokers that load it only when "the kubelet" syncs their
//! volume, each at its own time. At every instant each broker's presented
//! certificate must be trusted by every broker's loaded bundle (no outage),
//! and every decision is taken from the stored state alone (a restart).

use super::*;

const NAME: &str = "cluster CA";
const NOW: i64 = 1_800_000_000;

fn policy() -> Policy {
    Policy {
        validity_days: 365,
        renewal_days: 30,
        generate: true,
    }
}

/// A broker: what it has loaded from its Secret's volume.
#[derive(Clone, Debug)]
struct Broker {
    /// The CA certificate that signed the leaf it presents.
    leaf_signer: String,
    /// The trust bundle it verifies peers with.
    bundle: Vec<String>,
}

/// The Secrets and the brokers.
struct World {
    stored: StoredCa,
    /// The brokers' certificate Secret: its leaves' signer and the bundle
    /// it was issued with.
    secret_signer: String,
    secret_bundle: Vec<String>,
    brokers: Vec<Broker>,
}

impl World {
    fn new() -> World {
        let mut world = World {
            stored: StoredCa::default(),
            secret_signer: String::new(),
            secret_bundle: Vec::new(),
            brokers: Vec::new(),
        };
        let d = world.step(NOW);
        assert_eq!(d.phase, CaPhase::Ready);
        world.sync_all();
        world
    }

    /// What the controller re-issues after the CA writes: the brokers'
    /// leaves from the signing key, with the current bundle.
    fn reissue_leaves(&mut self) {
        let signer = self.stored.signing.as_ref().unwrap().cert_pem.clone();
        if self.secret_signer != signer || self.secret_bundle != self.stored.bundle {
            self.secret_signer = signer;
            self.secret_bundle = self.stored.bundle.clone();
        }
    }

    fn progress(&self) -> Progress {
        let signer = &self.stored.signing.as_ref().unwrap().cert_pem;
        Progress {
            brokers_loaded: self.secret_bundle == self.stored.bundle
                && self
                    .brokers
                    .iter()
                    .all(|b| b.leaf_signer == self.secret_signer && b.bundle == self.secret_bundle),
            leaves_resigned: self.secret_signer == *signer,
            bundle_distributed: true,
        }
    }

    /// One reconcile from the stored state only.
    fn step(&mut self, now: i64) -> Decision {
        let progress = if self.stored.signing.is_some() {
            self.progress()
        } else {
            Progress::default()
        };
        let d = decide(NAME, &self.stored, &policy(), &progress, now).unwrap();
        self.stored = apply_writes(&self.stored, &d.writes);
        self.reissue_leaves();
        self.check_no_outage();
        d
    }

    /// The kubelet updates broker `i`'s volume and the broker reloads.
    fn sync(&mut self, i: usize) {
        while self.brokers.len() <= i {
            self.brokers.push(Broker {
                leaf_signer: self.secret_signer.clone(),
                bundle: self.secret_bundle.clone(),
            });
        }
        self.brokers[i] = Broker {
            leaf_signer: self.secret_signer.clone(),
            bundle: self.secret_bundle.clone(),
        };
        self.check_no_outage();
    }

    fn sync_all(&mut self) {
        for i in 0..3 {
            self.sync(i);
        }
    }

    fn check_no_outage(&self) {
        for shown in &self.brokers {
            for verifier in &self.brokers {
                assert!(
                    verifier.bundle.contains(&shown.leaf_signer),
                    "a broker presents a certificate its peer does not trust"
                );
            }
        }
    }
}

fn signing(world: &World) -> String {
    world.stored.signing.as_ref().unwrap().cert_pem.clone()
}

#[test]
fn creation_makes_one_trusted_signing_ca() {
    let world = World::new();
    let ca = world.stored.signing.clone().unwrap();
    assert_eq!(world.stored.bundle, vec![ca.cert_pem.clone()]);
    assert_eq!(ca.not_after - NOW, 365 * DAY);
    let info = crate::certs::inspect::inspect(&ca.cert_pem).unwrap();
    assert!(
        info.subject.contains("CN=cluster CA v0"),
        "{}",
        info.subject
    );
}

#[test]
fn steady_until_the_renewal_window() {
    let mut world = World::new();
    let before = world.stored.clone();
    let d = world.step(NOW + 334 * DAY);
    assert_eq!((d.phase, d.writes.len()), (CaPhase::Ready, 0));
    assert_eq!(world.stored, before);
}

#[test]
fn key_replacement_goes_through_every_phase_without_an_outage() {
    let mut world = World::new();
    let old = signing(&world);
    let t = NOW + 340 * DAY;

    // Trust both: new key stored beside, bundle holds both, old still signs.
    let d = world.step(t);
    assert_eq!(d.phase, CaPhase::TrustingNewCa);
    let new = world.stored.next.clone().unwrap().cert_pem;
    assert_eq!(world.stored.bundle, vec![old.clone(), new.clone()]);
    assert_eq!(signing(&world), old);

    // Brokers that have not loaded the bundle hold the switch back; one
    // broker loading is not enough.
    assert_eq!(world.step(t).writes, vec![]);
    world.sync(0);
    let d = world.step(t);
    assert_eq!((d.phase, d.writes.len()), (CaPhase::TrustingNewCa, 0));
    world.sync(1);
    world.sync(2);

    // Switch: the new key signs, the old is still trusted.
    let d = world.step(t);
    assert_eq!(d.phase, CaPhase::DroppingOldCa);
    assert_eq!(signing(&world), new);
    assert_eq!(world.stored.generation, 1);
    assert_eq!(world.stored.bundle, vec![old.clone(), new.clone()]);
    assert!(world.stored.next.is_none());

    // Brokers present their old leaves until they reload: the old CA stays.
    let d = world.step(t);
    assert_eq!((d.phase, d.writes.len()), (CaPhase::DroppingOldCa, 0));
    world.sync(2);
    world.sync(0);
    assert_eq!(world.step(t).writes.len(), 0);
    world.sync(1);

    // Drop old.
    let d = world.step(t);
    assert_eq!(d.phase, CaPhase::Ready);
    assert_eq!(world.stored.bundle, vec![new.clone()]);
    world.sync(1);
    world.sync(0);
    world.sync(2);
    let d = world.step(t);
    assert_eq!((d.phase, d.writes.len()), (CaPhase::Ready, 0));
}

#[test]
fn a_restart_in_every_phase_recovers_from_the_secrets_alone() {
    let mut world = World::new();
    let t = NOW + 340 * DAY;
    let mut seen = Vec::new();
    for _ in 0..12 {
        // "Restart": a fresh decision from a copy of the stored state gives
        // the same answer as the running operator.
        let copy = world.stored.clone();
        let progress = world.progress();
        let phase_before = decide(NAME, &copy, &policy(), &progress, t).unwrap().phase;
        let d = world.step(t);
        assert_eq!(d.phase, phase_before);
        seen.push(d.phase);
        world.sync_all();
    }
    for phase in [
        CaPhase::TrustingNewCa,
        CaPhase::DroppingOldCa,
        CaPhase::Ready,
    ] {
        assert!(seen.contains(&phase), "{phase:?} in {seen:?}");
    }
    assert_eq!(seen.last(), Some(&CaPhase::Ready));
    assert_eq!(world.stored.bundle.len(), 1);
}

#[test]
fn a_crash_between_the_writes_of_any_step_is_repaired() {
    let t = NOW + 340 * DAY;
    for crash_at in 0..8 {
        let mut world = World::new();
        for step in 0..10 {
            let progress = world.progress();
            let d = decide(NAME, &world.stored, &policy(), &progress, t).unwrap();
            // The crash: only the first write of this step lands.
            let writes = if step == crash_at && d.writes.len() > 1 {
                &d.writes[..1]
            } else {
                &d.writes[..]
            };
            world.stored = apply_writes(&world.stored, writes);
            world.reissue_leaves();
            world.check_no_outage();
            world.sync_all();
        }
        assert_eq!(world.stored.bundle.len(), 1, "crash at step {crash_at}");
        assert_eq!(world.stored.generation, 1, "crash at step {crash_at}");
        let d = decide(NAME, &world.stored, &policy(), &world.progress(), t).unwrap();
        assert_eq!((d.phase, d.writes.len()), (CaPhase::Ready, 0));
    }
}

#[test]
fn the_switch_waits_for_users_to_hold_the_new_bundle() {
    let mut world = World::new();
    world.step(NOW + 340 * DAY);
    world.sync_all();
    let mut progress = world.progress();
    assert!(progress.brokers_loaded);
    progress.bundle_distributed = false;
    let d = decide(NAME, &world.stored, &policy(), &progress, NOW + 340 * DAY).unwrap();
    assert_eq!((d.phase, d.writes.len()), (CaPhase::TrustingNewCa, 0));
    assert!(d.message.unwrap().contains("TLS user"));
    progress.bundle_distributed = true;
    let d = decide(NAME, &world.stored, &policy(), &progress, NOW + 340 * DAY).unwrap();
    assert_eq!(d.phase, CaPhase::DroppingOldCa);
}

#[test]
fn force_renew_starts_a_replacement_once() {
    let mut world = World::new();
    world.stored.force_renew = true;
    let d = world.step(NOW + DAY);
    assert_eq!(d.phase, CaPhase::TrustingNewCa);
    assert!(d.message.unwrap().contains("force-renew"));
    assert!(
        !world.stored.force_renew,
        "the annotation goes with the write"
    );
    for _ in 0..6 {
        world.sync_all();
        world.step(NOW + DAY);
    }
    assert_eq!(world.stored.generation, 1);
    let d = world.step(NOW + DAY);
    assert_eq!((d.phase, d.writes.len()), (CaPhase::Ready, 0));
}

#[test]
fn an_expired_ca_is_replaced_at_once_and_says_so() {
    let mut world = World::new();
    let old = signing(&world);
    let d = world.step(NOW + 366 * DAY);
    assert!(d.replaced_expired);
    assert_eq!(d.phase, CaPhase::Ready);
    assert!(d.message.unwrap().contains("expired"));
    assert_ne!(signing(&world), old);
    assert_eq!(world.stored.bundle, vec![signing(&world)]);
    assert!(world.stored.not_after_ok(NOW + 366 * DAY));
}

#[test]
fn a_ca_the_user_brings_is_never_generated_or_replaced() {
    let byo = Policy {
        generate: false,
        ..policy()
    };
    let d = decide(NAME, &StoredCa::default(), &byo, &Progress::default(), NOW).unwrap();
    assert_eq!((d.phase, d.writes.len()), (CaPhase::Missing, 0));
    assert!(d.message.unwrap().contains("generateCertificateAuthority"));

    let ca = new_ca("mine", 10, NOW).unwrap();
    let stored = StoredCa {
        signing: Some(ca.clone()),
        bundle: vec![ca.cert_pem.clone()],
        force_renew: true,
        ..StoredCa::default()
    };
    let no_bundle = StoredCa {
        bundle: Vec::new(),
        ..stored.clone()
    };
    let d = decide(NAME, &no_bundle, &byo, &Progress::default(), NOW).unwrap();
    assert_eq!((d.phase, d.writes.len()), (CaPhase::Missing, 0));
    let near = decide(NAME, &stored, &byo, &Progress::default(), NOW + 9 * DAY).unwrap();
    assert_eq!((near.phase, near.writes.len()), (CaPhase::Ready, 0));
    let expired = decide(NAME, &stored, &byo, &Progress::default(), NOW + 11 * DAY).unwrap();
    assert_eq!((expired.phase, expired.writes.len()), (CaPhase::Expired, 0));
}

impl StoredCa {
    fn not_after_ok(&self, now: i64) -> bool {
        self.signing.as_ref().is_some_and(|s| s.not_after > now)
    }
}
