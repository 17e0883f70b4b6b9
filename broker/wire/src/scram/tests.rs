use super::*;

/// Asserts that `$result` is an `Err` matching `$pattern`.
macro_rules! assert_err {
    ($result:expr, $pattern:pat $(if $guard:expr)?) => {
        match $result {
            Err($pattern) $(if $guard)? => {}
            other => panic!("expected {}, got {other:?}", stringify!($pattern)),
        }
    };
}

const SHA256: ScramMechanism = ScramMechanism::Sha256;
const SHA512: ScramMechanism = ScramMechanism::Sha512;

fn lookup(
    user: &'static str,
    credential: ScramCredential,
) -> impl FnOnce(&str) -> Option<ScramCredential> {
    move |name| (name == user).then_some(credential)
}

/// Runs a whole exchange against one stored user; the error is the server's.
fn exchange(
    mech: ScramMechanism,
    stored: (&'static str, &str),
    user: &str,
    password: &str,
) -> Result<String, ScramError> {
    let credential = ScramCredential::new(mech, stored.1, 4096);
    let mut client = ScramClient::new(mech, user, password);
    let mut server = ScramServer::new(mech);
    let server_first = server.client_first(&client.client_first(), lookup(stored.0, credential))?;
    let (server_final, name) = server.client_final(&client.client_final(&server_first)?)?;
    client.verify_server_final(&server_final)?;
    Ok(name)
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap()
}

#[test]
fn rfc7677_sha256_test_vector() {
    let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    let salted = SHA256.salted_password(b"pencil", &salt, 4096);
    let credential = ScramCredential::from_salted_password(SHA256, &salt, &salted, 4096);
    let mut client = ScramClient::with_nonce(SHA256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
    let mut server = ScramServer::new(SHA256);

    let client_first = client.client_first();
    assert_eq!(text(&client_first), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    let server_nonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    let server_first = server.start(&client_first, lookup("user", credential), server_nonce);
    let server_first = server_first.unwrap();
    let expected = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                    s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    assert_eq!(text(&server_first), expected);
    let client_final = client.client_final(&server_first).unwrap();
    let expected = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                    p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    assert_eq!(text(&client_final), expected);
    let (server_final, user) = server.client_final(&client_final).unwrap();
    assert_eq!(user, "user");
    assert_eq!(
        text(&server_final),
        "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    );
    client.verify_server_final(&server_final).unwrap();
}

#[test]
fn full_exchange_for_both_mechanisms() {
    for mech in [SHA256, SHA512] {
        assert_eq!(
            exchange(mech, ("alice", "secret"), "alice", "secret").unwrap(),
            "alice"
        );
        let credential = ScramCredential::new(mech, "secret", 4096);
        assert_eq!(credential.stored_key.len(), mech.output_len());
    }
}

#[test]
fn user_names_with_comma_and_equals_are_escaped_and_decoded() {
    let client = ScramClient::new(SHA512, "a,b=c", "pw");
    assert!(text(&client.client_first()).starts_with("n,,n=a=2Cb=3Dc,r="));
    assert_eq!(
        exchange(SHA512, ("a,b=c", "pw"), "a,b=c", "pw").unwrap(),
        "a,b=c"
    );
}

#[test]
fn wrong_password_fails() {
    assert_err!(
        exchange(SHA256, ("alice", "right"), "alice", "wrong"),
        ScramError::AuthenticationFailed
    );
}

#[test]
fn unknown_user_fails_like_a_wrong_password() {
    assert_err!(
        exchange(SHA256, ("alice", "right"), "mallory", "right"),
        ScramError::AuthenticationFailed
    );
}

#[test]
fn unknown_user_server_first_looks_real_and_is_stable() {
    let salt_for = |user: &str| {
        let client = ScramClient::new(SHA512, user, "pw");
        let mut server = ScramServer::new(SHA512);
        let reply = server
            .client_first(&client.client_first(), |_| None)
            .unwrap();
        let attrs: Vec<&str> = text(&reply).split(',').collect();
        assert_eq!(attrs.len(), 3, "{attrs:?}");
        assert!(attrs[0].starts_with(&format!("r={}", client.nonce)));
        assert!(attrs[0].len() >= 2 + client.nonce.len() + 32, "{attrs:?}");
        let salt = BASE64.decode(attrs[1].strip_prefix("s=").unwrap()).unwrap();
        assert_eq!(salt.len(), SALT_BYTES);
        assert_eq!(attrs[2], "i=4096");
        salt
    };
    assert_eq!(salt_for("ghost"), salt_for("ghost"));
    assert_ne!(salt_for("ghost"), salt_for("phantom"));
}

#[test]
fn server_nonce_extends_the_client_nonce_with_fresh_randomness() {
    let client_first = ScramClient::with_nonce(SHA256, "u", "p", "abc").client_first();
    let nonce = || {
        let reply = ScramServer::new(SHA256)
            .client_first(&client_first, |_| None)
            .unwrap();
        text(&reply).split(',').next().unwrap().to_string()
    };
    let (a, b) = (nonce(), nonce());
    assert!(a.starts_with("r=abc") && b.starts_with("r=abc"), "{a} {b}");
    assert_ne!(a, b);
}

fn client_first_result(message: &[u8]) -> Result<Vec<u8>, ScramError> {
    ScramServer::new(SHA256).client_first(message, |_| None)
}

#[test]
fn malformed_client_first_is_refused() {
    for message in [
        &b""[..],
        b"n",
        b"n,,",
        b"x,,n=user,r=abc",
        b"n,x=user,n=user,r=abc",
        b"n,,r=abc",
        b"n,,n=user",
        b"n,,n=user,x=abc",
        b"n,,n=,r=abc",
        b"n,,n=us=er,r=abc",
        b"n,,n=user,r=",
        b"n,,n=user,r=abc,=x",
        b"n,,m=ext,n=user,r=abc",
        b"n,,n=\xff,r=abc",
    ] {
        assert_err!(client_first_result(message), ScramError::Malformed { .. });
    }
}

#[test]
fn channel_binding_and_foreign_authzid_are_refused() {
    assert_err!(
        client_first_result(b"p=tls-unique,,n=user,r=abc"),
        ScramError::ChannelBindingUnsupported(_)
    );
    assert_err!(
        client_first_result(b"n,a=admin,n=user,r=abc"),
        ScramError::AuthorizationIdMismatch(_)
    );
}

#[test]
fn accepted_gs2_variants_and_kafka_extension() {
    for message in [
        &b"y,,n=user,r=abc"[..],
        b"n,a=user,n=user,r=abc",
        b"n,,n=user,r=abc,tokenauth=true",
    ] {
        client_first_result(message).unwrap();
    }
}

/// A server past client-first from "user" (password "pencil"), with the
/// client nonce "abc" and the server nonce "xyz".
fn started_server() -> ScramServer {
    let credential = ScramCredential::new(SHA256, "pencil", 4096);
    let mut server = ScramServer::new(SHA256);
    server
        .start(b"n,,n=user,r=abc", lookup("user", credential), "xyz")
        .unwrap();
    server
}

fn client_final_result(message: &str) -> Result<(Vec<u8>, String), ScramError> {
    started_server().client_final(message.as_bytes())
}

#[test]
fn malformed_client_final_is_refused() {
    let proof = BASE64.encode([0u8; 32]);
    for message in [
        "c=biws,r=abcxyz".to_string(),
        format!("r=abcxyz,p={proof}"),
        format!("c=biws,p={proof}"),
        format!("c=b!ws,r=abcxyz,p={proof}"),
        "c=biws,r=abcxyz,p=not*base64".to_string(),
        format!("c=biws,r=abcxyz,p={proof},x=1"),
        format!("c=biws,r=abcxyz,p={}", BASE64.encode([0u8; 16])),
    ] {
        assert_err!(client_final_result(&message), ScramError::Malformed { .. });
    }
}

/// client-final as librdkafka before 2.6.1 builds it: the client nonce
/// in front of the whole exchange nonce, with the proof over that text.
fn doubled_nonce_final(prefix: &str) -> Result<(Vec<u8>, String), ScramError> {
    let mech = SHA512;
    let credential = ScramCredential::new(mech, "secret", 4096);
    let mut server = ScramServer::new(mech);
    let first = server
        .client_first(b"n,,n=carol,r=cnonce123", |_| Some(credential.clone()))
        .unwrap();
    let server_first = text(&first).to_string();
    let mut attrs = server_first.split(',');
    let nonce = attrs.next().unwrap().strip_prefix("r=").unwrap();
    let salt = BASE64
        .decode(attrs.next().unwrap().strip_prefix("s=").unwrap())
        .unwrap();
    let salted = mech.salted_password(b"secret", &salt, 4096);
    let (client_key, stored_key, _) = mech.keys(&salted);
    let without_proof = format!("c=biws,r={prefix}{nonce}");
    let auth = format!("n=carol,r=cnonce123,{server_first},{without_proof}");
    let proof = xor(&client_key, &mech.hmac(&stored_key, auth.as_bytes()));
    let message = format!("{without_proof},p={}", BASE64.encode(proof));
    server.client_final(message.as_bytes())
}

#[test]
fn old_librdkafka_doubled_client_nonce_is_accepted_and_nothing_else() {
    assert_eq!(doubled_nonce_final("cnonce123").unwrap().1, "carol");
    assert_err!(doubled_nonce_final("cnonce124"), ScramError::NonceMismatch);
    assert_err!(doubled_nonce_final("x"), ScramError::NonceMismatch);
}

#[test]
fn client_final_with_wrong_nonce_or_binding_is_refused() {
    let proof = BASE64.encode([0u8; 32]);
    let result = client_final_result(&format!("c=biws,r=abcxyq,p={proof}"));
    assert_err!(result, ScramError::NonceMismatch);
    let result = client_final_result(&format!("c=eSws,r=abcxyz,p={proof}"));
    assert_err!(result, ScramError::ChannelBindingMismatch);
}

#[test]
fn out_of_order_steps_are_refused() {
    let mut fresh = ScramServer::new(SHA256);
    assert_err!(
        fresh.client_final(b"c=biws,r=abc,p=AAAA"),
        ScramError::OutOfOrder(_)
    );
    let result = started_server().client_first(b"n,,n=user,r=abc", |_| None);
    assert_err!(result, ScramError::OutOfOrder(_));

    // A failed exchange stays failed: no second guess at the proof.
    let mut server = started_server();
    let message = format!("c=biws,r=abcxyz,p={}", BASE64.encode([0u8; 32]));
    assert_err!(
        server.client_final(message.as_bytes()),
        ScramError::AuthenticationFailed
    );
    assert_err!(
        server.client_final(message.as_bytes()),
        ScramError::OutOfOrder(_)
    );

    let client = ScramClient::new(SHA256, "u", "p");
    assert_err!(
        client.verify_server_final(b"v=AAAA"),
        ScramError::OutOfOrder(_)
    );
}

#[test]
fn client_checks_the_server() {
    let mut client = ScramClient::with_nonce(SHA256, "user", "pencil", "abc");
    let salt = BASE64.encode([1u8; 16]);
    let mut server_first = |nonce: &str, iterations: &str| {
        client.client_final(format!("r={nonce},s={salt},i={iterations}").as_bytes())
    };
    assert_err!(server_first("abd123", "4096"), ScramError::NonceMismatch);
    assert_err!(server_first("abc", "4096"), ScramError::NonceMismatch);
    assert_err!(server_first("abc1", "1"), ScramError::InvalidIterations(1));
    assert_err!(
        server_first("abc1", "16385"),
        ScramError::InvalidIterations(16385)
    );
    assert_err!(server_first("abc1", "x"), ScramError::Malformed { .. });
    server_first("abc1", "16384").unwrap();
    server_first("abc1", "4096").unwrap();

    let forged = format!("v={}", BASE64.encode([0u8; 32]));
    let result = client.verify_server_final(forged.as_bytes());
    assert_err!(result, ScramError::ServerSignatureMismatch);
    let result = client.verify_server_final(b"e=invalid-proof");
    assert_err!(result, ScramError::ServerRefused(ref e) if e == "invalid-proof");
}

#[test]
fn iteration_bounds() {
    assert_err!(check_iterations(4095), ScramError::InvalidIterations(4095));
    assert_err!(check_iterations(0), ScramError::InvalidIterations(0));
    assert_err!(
        check_iterations(MAX_ITERATIONS + 1),
        ScramError::InvalidIterations(_)
    );
    assert!(check_iterations(MIN_ITERATIONS).is_ok());
    assert!(check_iterations(MAX_ITERATIONS).is_ok());
}

#[test]
fn mechanism_names_and_kafka_types() {
    for mech in [SHA256, SHA512] {
        assert_eq!(ScramMechanism::from_name(mech.name()), Some(mech));
        assert_eq!(
            ScramMechanism::from_kafka_type(mech.kafka_type()),
            Some(mech)
        );
    }
    assert_eq!((SHA256.name(), SHA256.kafka_type()), ("SCRAM-SHA-256", 1));
    assert_eq!((SHA512.name(), SHA512.kafka_type()), ("SCRAM-SHA-512", 2));
    assert_eq!(ScramMechanism::from_name("scram-sha-256"), None);
    assert_eq!(ScramMechanism::from_kafka_type(0), None);
}

#[test]
fn new_credentials_get_fresh_salts() {
    let a = ScramCredential::new(SHA256, "pw", 4096);
    let b = ScramCredential::new(SHA256, "pw", 4096);
    assert_eq!(a.salt.len(), SALT_BYTES);
    assert_ne!(a.salt, b.salt);
    assert_ne!(a.stored_key, b.stored_key);
}
