//! The name a TLS client acts as: its certificate's subject written the way
//! Java writes it, then Kafka's `ssl.principal.mapping.rules` (KIP-371).
//!
//! Kafka's SSL principal is `User:` plus the mapped subject, and operators
//! write ACLs and mapping rules against Java's `X500Principal.getName()`
//! text, so [`subject_name`] reproduces that text exactly rather than any
//! other RFC 2253/4514 rendering: RDNs last-first, joined by `,` without
//! spaces; the AVAs of a multi-valued RDN joined by `+`; the keywords CN, C,
//! L, ST, O, OU, STREET, DC and UID, any other type as its dotted OID with
//! `#` and the hex DER value; and Java's escaping (`,` `=` `+` `<` `>` `#`
//! `;` `"` `\` anywhere, NUL as `\00`, spaces and CRs at either end).
//!
//! The mapping rules are a comma-separated list of `RULE:pattern/replacement/`
//! with an optional `L` or `U` (lower- or upper-case the result) and
//! `DEFAULT` (the name unchanged); the first rule whose pattern matches the
//! whole name wins. Patterns are Java regexes run by the `regex` crate, which
//! covers the forms used in practice; lookaround, back-references and
//! case-insensitive `(?i)` (Unicode case tables are not built in) are
//! refused when the rules are parsed, not when a client connects.

use std::{fmt::Write as _, str::FromStr};

use regex::Regex;
use x509_cert::{
    attr::AttributeTypeAndValue,
    der::{asn1::ObjectIdentifier, Decode, Encode, Tag, Tagged},
    name::Name,
    Certificate,
};

/// Why a subject name or a set of mapping rules could not be had.
#[derive(Debug, thiserror::Error)]
pub enum PrincipalError {
    /// The bytes are not a DER X.509 certificate.
    #[error("cannot decode the client certificate")]
    Certificate(#[source] x509_cert::der::Error),
    /// A subject attribute value could not be turned into text or hex.
    #[error("subject attribute {oid} has a value that cannot be written: {reason}")]
    Attribute {
        /// The attribute's OID, dotted.
        oid: String,
        /// What is wrong with the value.
        reason: String,
    },
    /// The mapping rules do not follow `RULE:pattern/replacement/[LU]` or
    /// `DEFAULT`, separated by commas.
    #[error("invalid ssl.principal.mapping.rules at character {at}: {reason}")]
    InvalidRule {
        /// 0-based character offset in the rules text.
        at: usize,
        /// What is wrong there.
        reason: String,
    },
    /// A rule's pattern is not a regex this broker can run.
    #[error("ssl.principal.mapping.rules pattern `{pattern}` is not supported")]
    InvalidPattern {
        /// The pattern as written in the rule.
        pattern: String,
        /// The regex compiler's complaint.
        #[source]
        source: regex::Error,
    },
}

/// The subject distinguished name of a DER certificate, as Java's
/// `X500Principal.getName()` prints it (see the module doc).
pub fn subject_name(cert_der: &[u8]) -> Result<String, PrincipalError> {
    let cert = Certificate::from_der(cert_der).map_err(PrincipalError::Certificate)?;
    format_name(&cert.tbs_certificate.subject)
}

fn format_name(name: &Name) -> Result<String, PrincipalError> {
    let mut out = String::new();
    for (i, rdn) in name.0.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, atv) in rdn.0.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            write_attribute(&mut out, atv)?;
        }
    }
    Ok(out)
}

/// The OIDs Java writes with an RFC 2253 keyword; every other type is
/// written as its dotted OID.
const KEYWORDS: [(&str, &str); 9] = [
    ("2.5.4.3", "CN"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.9", "STREET"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("0.9.2342.19200300.100.1.1", "UID"),
];

fn keyword(oid: &ObjectIdentifier) -> Option<&'static str> {
    let dotted = oid.to_string();
    KEYWORDS.iter().find(|(o, _)| *o == dotted).map(|(_, k)| *k)
}

fn write_attribute(out: &mut String, atv: &AttributeTypeAndValue) -> Result<(), PrincipalError> {
    let attribute_error = |reason: String| PrincipalError::Attribute {
        oid: atv.oid.to_string(),
        reason,
    };
    let text = match keyword(&atv.oid) {
        Some(keyword) => {
            out.push_str(keyword);
            value_text(atv.value.tag(), atv.value.value()).map_err(attribute_error)?
        }
        None => {
            out.push_str(&atv.oid.to_string());
            None
        }
    };
    out.push('=');
    match text {
        Some(text) => out.push_str(&escape_value(&text)),
        None => {
            // Java's form for types without a keyword and for non-string
            // values: `#` and the value's whole DER encoding in lower-case hex.
            let der = atv
                .value
                .to_der()
                .map_err(|e| attribute_error(e.to_string()))?;
            out.push('#');
            for byte in der {
                let _ = write!(out, "{byte:02x}");
            }
        }
    }
    Ok(())
}

/// The text of a value of one of the string types Java prints as text, in
/// Java's charset for each; `None` for other types (printed as hex).
fn value_text(tag: Tag, bytes: &[u8]) -> Result<Option<String>, String> {
    Ok(Some(match tag {
        Tag::Utf8String => String::from_utf8_lossy(bytes).into_owned(),
        // Java reads these three as ISO-8859-1: one byte, one character.
        Tag::PrintableString | Tag::TeletexString | Tag::Ia5String => {
            bytes.iter().map(|&b| char::from(b)).collect()
        }
        Tag::BmpString => {
            if !bytes.len().is_multiple_of(2) {
                return Err("BMPString with an odd number of bytes".into());
            }
            let units = bytes
                .chunks_exact(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .map_err(|_| "BMPString with an unpaired surrogate".to_string())?
        }
        _ => return Ok(None),
    }))
}

/// Java's RFC 2253 escaping of an attribute value.
fn escape_value(value: &str) -> String {
    let mut escaped = Vec::with_capacity(value.len());
    for c in value.chars() {
        match c {
            ',' | '=' | '+' | '<' | '>' | '#' | ';' | '"' | '\\' => escaped.extend(['\\', c]),
            '\0' => escaped.extend(['\\', '0', '0']),
            _ => escaped.push(c),
        }
    }
    let edge = |c: &char| *c == ' ' || *c == '\r';
    let lead = escaped.iter().take_while(|c| edge(c)).count();
    let trail = escaped.len() - escaped.iter().rev().take_while(|c| edge(c)).count();
    let mut out = String::with_capacity(escaped.len() + 2);
    for (i, c) in escaped.into_iter().enumerate() {
        if i < lead || i >= trail {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Parsed `ssl.principal.mapping.rules`, applied in order.
#[derive(Debug, Clone)]
pub struct MappingRules {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
enum Rule {
    /// `DEFAULT`: the name unchanged.
    Default,
    /// `RULE:pattern/replacement/[LU]`.
    Replace {
        /// The pattern anchored at both ends: whether the rule applies.
        whole: Regex,
        /// The pattern as written: what the replacement runs over, as Java's
        /// `String.replaceAll` does.
        pattern: Regex,
        /// The replacement in the `regex` crate's syntax.
        replacement: String,
        case: Case,
    },
}

#[derive(Debug, Clone, Copy)]
enum Case {
    Keep,
    Lower,
    Upper,
}

/// Kafka's default: `DEFAULT`, the subject name unchanged.
impl Default for MappingRules {
    fn default() -> Self {
        Self {
            rules: vec![Rule::Default],
        }
    }
}

const AFTER_RULE: &str =
    "unexpected text after a rule (a rule ends with `/`, `/L` or `/U`; rules are separated by `,`)";

/// Parses `ssl.principal.mapping.rules`. Empty entries (a trailing comma)
/// are ignored, as Kafka does; an empty text gives no rules.
pub fn parse(rules: &str) -> Result<MappingRules, PrincipalError> {
    let mut parsed = Vec::new();
    let mut rest = rules;
    let at = |rest: &str| rules[..rules.len() - rest.len()].chars().count();
    let invalid = |rest: &str, reason: &str| PrincipalError::InvalidRule {
        at: at(rest),
        reason: reason.to_string(),
    };
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
            continue;
        }
        if rest.is_empty() {
            break;
        }
        if let Some(after) = rest.strip_prefix("DEFAULT") {
            parsed.push(Rule::Default);
            rest = after;
        } else if let Some(after) = rest.strip_prefix("RULE:") {
            let (pattern, after) = until_slash(after)
                .ok_or_else(|| invalid(after, "the pattern is not closed by `/`"))?;
            let (replacement, after) = until_slash(after)
                .ok_or_else(|| invalid(after, "the replacement is not closed by `/`"))?;
            let (case, after) = match after.chars().next() {
                Some('L') => (Case::Lower, &after[1..]),
                Some('U') => (Case::Upper, &after[1..]),
                _ => (Case::Keep, after),
            };
            parsed.push(Rule::new(pattern, replacement, case).map_err(|e| match e {
                RuleError::Pattern(source) => PrincipalError::InvalidPattern {
                    pattern: pattern.to_string(),
                    source,
                },
                RuleError::Replacement(reason) => invalid(rest, &reason),
            })?);
            rest = after;
        } else {
            return Err(invalid(
                rest,
                "expected `RULE:pattern/replacement/[LU]` or `DEFAULT`",
            ));
        }
        rest = rest.trim_start();
        match rest.strip_prefix(',') {
            Some(after) => rest = after,
            None if rest.is_empty() => break,
            None => return Err(invalid(rest, AFTER_RULE)),
        }
    }
    Ok(MappingRules { rules: parsed })
}

impl FromStr for MappingRules {
    type Err = PrincipalError;

    fn from_str(rules: &str) -> Result<Self, Self::Err> {
        parse(rules)
    }
}

impl MappingRules {
    /// The principal name for `dn`: the first rule that applies, or `dn`
    /// unchanged when none does. Kafka instead refuses the client when no
    /// rule applies (a rule list without `DEFAULT`); [`Self::try_map`] tells
    /// that case apart.
    pub fn map(&self, dn: &str) -> String {
        self.try_map(dn).unwrap_or_else(|| dn.to_string())
    }

    /// The principal name from the first rule that applies to `dn`, `None`
    /// when none does.
    pub fn try_map(&self, dn: &str) -> Option<String> {
        self.rules.iter().find_map(|rule| rule.apply(dn))
    }
}

enum RuleError {
    Pattern(regex::Error),
    Replacement(String),
}

impl Rule {
    fn new(pattern: &str, replacement: &str, case: Case) -> Result<Self, RuleError> {
        // In a rule `\/` only keeps a `/` from ending the pattern: to the
        // regex it is a plain `/`.
        let pattern = pattern.replace("\\/", "/");
        let whole = Regex::new(&format!("^(?:{pattern})$")).map_err(RuleError::Pattern)?;
        let unanchored = Regex::new(&pattern).map_err(RuleError::Pattern)?;
        let replacement =
            java_replacement(replacement, &unanchored).map_err(RuleError::Replacement)?;
        Ok(Self::Replace {
            whole,
            pattern: unanchored,
            replacement,
            case,
        })
    }

    fn apply(&self, dn: &str) -> Option<String> {
        let Self::Replace {
            whole,
            pattern,
            replacement,
            case,
        } = self
        else {
            return Some(dn.to_string());
        };
        if !whole.is_match(dn) {
            return None;
        }
        let name = pattern.replace_all(dn, replacement.as_str());
        Some(match case {
            Case::Keep => name.into_owned(),
            Case::Lower => name.to_lowercase(),
            Case::Upper => name.to_uppercase(),
        })
    }
}

/// The text up to the first `/` not escaped by `\`, and what follows that
/// `/`; `None` if there is no such `/`.
fn until_slash(text: &str) -> Option<(&str, &str)> {
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next()?;
            }
            '/' => return Some((&text[..i], &text[i + 1..])),
            _ => {}
        }
    }
    None
}

/// Turns a Java replacement string into the regex crate's syntax.
///
/// Java: `\x` is a literal `x`; `$` and digits name the longest group
/// number that exists; `${name}` a named group. As in Kafka, `$n` for a
/// group the pattern does not have is kept as literal text (but with no
/// groups at all Java fails on every match, so that is refused here).
fn java_replacement(text: &str, pattern: &Regex) -> Result<String, String> {
    let groups = pattern.captures_len() - 1;
    let mut out = String::with_capacity(text.len() + 8);
    let push_literal = |out: &mut String, c: char| match c {
        '$' => out.push_str("$$"),
        _ => out.push(c),
    };
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped) => push_literal(&mut out, escaped),
                None => return Err("the replacement ends with a lone `\\`".into()),
            },
            '$' => match chars.peek().copied() {
                Some(digit @ '0'..='9') => {
                    let mut group = digit as usize - '0' as usize;
                    if group > groups {
                        if groups == 0 {
                            return Err(format!(
                                "the replacement uses ${group} but the pattern has no groups"
                            ));
                        }
                        out.push_str("$$");
                        continue;
                    }
                    chars.next();
                    while let Some(more) = chars.peek().and_then(|c| c.to_digit(10)) {
                        let longer = group * 10 + more as usize;
                        if longer > groups {
                            break;
                        }
                        group = longer;
                        chars.next();
                    }
                    let _ = write!(out, "${{{group}}}");
                }
                Some('{') => {
                    chars.next();
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => return Err("`${` in the replacement is not closed".into()),
                        }
                    }
                    if !pattern.capture_names().flatten().any(|n| n == name) {
                        return Err(format!("the pattern has no group named `{name}`"));
                    }
                    let _ = write!(out, "${{{name}}}");
                }
                _ => {
                    return Err(
                        "`$` in the replacement must be followed by a group number or {name} \
                         (write `\\$` for a dollar sign)"
                            .into(),
                    )
                }
            },
            _ => push_literal(&mut out, c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, KeyPair};

    use super::*;

    fn cert_with_subject(entries: Vec<(DnType, DnValue)>) -> Vec<u8> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = DistinguishedName::new();
        for (ty, value) in entries {
            dn.push(ty, value);
        }
        params.distinguished_name = dn;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn utf8(value: &str) -> DnValue {
        DnValue::Utf8String(value.to_string())
    }

    #[test]
    fn subject_is_written_last_rdn_first_with_keywords() {
        let der = cert_with_subject(vec![
            (
                DnType::CountryName,
                DnValue::PrintableString("US".try_into().unwrap()),
            ),
            (DnType::StateOrProvinceName, utf8("Oregon")),
            (DnType::LocalityName, utf8("Portland")),
            (DnType::OrganizationName, utf8("Acme Inc")),
            (DnType::OrganizationalUnitName, utf8("Platform")),
            (DnType::CommonName, utf8("kafka-client")),
        ]);
        assert_eq!(
            subject_name(&der).unwrap(),
            "CN=kafka-client,OU=Platform,O=Acme Inc,L=Portland,ST=Oregon,C=US"
        );
    }

    #[test]
    fn values_are_escaped_as_java_does() {
        let der = cert_with_subject(vec![
            (DnType::OrganizationName, utf8("Smith, Jones & Co")),
            (DnType::CommonName, utf8(" a#b=c+d<e>f;g\"h\\i ")),
        ]);
        assert_eq!(
            subject_name(&der).unwrap(),
            r#"CN=\ a\#b\=c\+d\<e\>f\;g\"h\\i\ ,O=Smith\, Jones & Co"#
        );
    }

    #[test]
    fn escape_edges() {
        assert_eq!(escape_value("#lead"), "\\#lead");
        assert_eq!(escape_value("  two"), "\\ \\ two");
        assert_eq!(escape_value("end \r"), "end\\ \\\r");
        assert_eq!(escape_value("   "), "\\ \\ \\ ");
        assert_eq!(escape_value("nul\0"), "nul\\00");
        assert_eq!(escape_value("in side"), "in side");
        assert_eq!(escape_value("ünïcødé"), "ünïcødé");
    }

    #[test]
    fn other_string_types_are_decoded() {
        let der = cert_with_subject(vec![
            (
                DnType::OrganizationalUnitName,
                DnValue::BmpString("Ünï €".try_into().unwrap()),
            ),
            (
                DnType::LocalityName,
                DnValue::TeletexString("Teletex".try_into().unwrap()),
            ),
            (
                DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 25]),
                DnValue::Ia5String("example".try_into().unwrap()),
            ),
            (
                DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 1]),
                utf8("u42"),
            ),
            (DnType::CustomDnType(vec![2, 5, 4, 9]), utf8("1 Main St")),
        ]);
        assert_eq!(
            subject_name(&der).unwrap(),
            "STREET=1 Main St,UID=u42,DC=example,L=Teletex,OU=Ünï €"
        );
    }

    #[test]
    fn types_without_keyword_are_dotted_oid_and_hex() {
        // emailAddress has no RFC 2253 keyword, so Java prints it this way.
        let der = cert_with_subject(vec![
            (
                DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]),
                utf8("a@b"),
            ),
            (DnType::CommonName, utf8("x")),
        ]);
        assert_eq!(
            subject_name(&der).unwrap(),
            "CN=x,1.2.840.113549.1.9.1=#0c03614062"
        );
    }

    #[test]
    fn multi_valued_rdns_are_joined_with_plus() {
        let name = Name::from_str("CN=alice+UID=a1,O=Acme").unwrap();
        assert_eq!(format_name(&name).unwrap(), "CN=alice+UID=a1,O=Acme");
        assert_eq!(format_name(&Name::default()).unwrap(), "");
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(matches!(
            subject_name(b"not der"),
            Err(PrincipalError::Certificate(_))
        ));
        assert!(matches!(
            subject_name(&[]),
            Err(PrincipalError::Certificate(_))
        ));
    }

    const KAFKA_DOCS_RULES: &str = "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,\
        RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L,\
        RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L,\
        DEFAULT";

    #[test]
    fn kafka_documentation_example() {
        let rules = parse(KAFKA_DOCS_RULES).unwrap();
        let map = |dn: &str| rules.map(dn);
        assert_eq!(
            map("CN=serviceuser,OU=ServiceUsers,O=Unknown,L=Unknown,ST=Unknown,C=Unknown"),
            "serviceuser"
        );
        assert_eq!(
            map("CN=adminUser,OU=Admin,O=Unknown,L=Unknown,ST=Unknown,C=Unknown"),
            "adminuser@admin"
        );
        assert_eq!(map("CN=kafka-server1,OU=KAFKA"), "kafka");
        assert_eq!(map("CN=Kafka.Server1,OU=KAFKA"), "kafka.server1");
        assert_eq!(
            map("OU=JavaSoft,O=Sun Microsystems,C=US"),
            "OU=JavaSoft,O=Sun Microsystems,C=US"
        );
    }

    #[test]
    fn kip_371_examples() {
        let rules = parse(
            "RULE:^CN=(.*?), OU=(.*?), O=(.*?), L=(.*?), ST=(.*?), C=(.*?)$/$1@$2/, \
             RULE:^cn=(.*?),ou=(.*?),dc=(.*?),dc=(.*?)$/$1@$2/L ,\n\
             RULE:^CN=(.*?), OU=(.*?)$/$1/",
        )
        .unwrap();
        assert_eq!(rules.map("CN=kafka-server1, OU=KAFKA"), "kafka-server1");
        assert_eq!(
            rules.map("CN=kafka1, OU=SME, O=mycp, L=Fulton, ST=MD, C=US"),
            "kafka1@SME"
        );
        assert_eq!(rules.map("cn=kafka1,ou=SME,dc=mycp,dc=com"), "kafka1@sme");
    }

    #[test]
    fn whole_name_must_match() {
        let rules = parse("RULE:CN=([^,]*)/$1/U").unwrap();
        assert_eq!(rules.try_map("CN=alice"), Some("ALICE".to_string()));
        assert_eq!(rules.try_map("CN=alice,O=Acme"), None);
        assert_eq!(rules.map("CN=alice,O=Acme"), "CN=alice,O=Acme");
    }

    #[test]
    fn commas_and_slashes_inside_rules() {
        let rules = parse(r"RULE:^CN=((\\, *|\w)+)(,.*|$)/$1/,DEFAULT").unwrap();
        assert_eq!(
            rules.map(r"CN=Tkac\, Adam,OU=ITZ,DC=geodis,DC=cz"),
            r"Tkac\, Adam"
        );

        let rules = parse(r"RULE:^CN=([^\/]*)\/(.*)$/$2\/$1/").unwrap();
        assert_eq!(rules.map("CN=a/b"), "b/a");
    }

    #[test]
    fn java_replacement_forms() {
        let map = |rules: &str, dn: &str| parse(rules).unwrap().map(dn);
        // `$1x` is group 1 then `x`, not a group named `1x`.
        assert_eq!(map("RULE:^CN=(.*)$/$1x/", "CN=a"), "ax");
        // The longest existing group number wins; `$12` with one group is `$1` and `2`.
        assert_eq!(map("RULE:^CN=(.*)$/$12/", "CN=a"), "a2");
        // A group the pattern does not have is literal text, as in Kafka.
        assert_eq!(map("RULE:^CN=(.*)$/$1-$4/", "CN=a"), "a-$4");
        assert_eq!(
            map(r"RULE:^CN=(.*)$/\$1 costs \\ $0/", "CN=a"),
            r"$1 costs \ CN=a"
        );
        assert_eq!(map("RULE:^CN=(?<user>.*)$/${user}@x/", "CN=a"), "a@x");
        assert_eq!(map("RULE:^CN=.*$/fixed/", "CN=a"), "fixed");
    }

    #[test]
    fn default_and_empty_rule_lists() {
        assert_eq!(MappingRules::default().map("CN=x"), "CN=x");
        let empty = parse("").unwrap();
        assert_eq!(empty.try_map("CN=x"), None);
        assert_eq!(empty.map("CN=x"), "CN=x");
        let rules: MappingRules = " DEFAULT , ".parse().unwrap();
        assert_eq!(rules.try_map("CN=x"), Some("CN=x".to_string()));
    }

    #[test]
    fn invalid_rules_are_refused() {
        for rules in [
            "default",
            "DEFAUL",
            "DEFAULT/L",
            "DEFAULT DEFAULT",
            "rule:^CN=(.*?),OU=ServiceUsers.*$/$1/",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/L",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/LU",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L/U",
            "RULE:^CN=(.*)$/$1\\/",
            "RULE:^CN=(.*)$/$/",
            "RULE:^CN=(.*)$/${nope}/",
            "RULE:^CN=(?<user>.*)$/${user/",
            "RULE:^CN=.*$/$1/",
            "DEFAULT,RULE:x",
        ] {
            let error = parse(rules).unwrap_err();
            assert!(
                matches!(error, PrincipalError::InvalidRule { .. }),
                "{rules}: {error}"
            );
        }
        let error = parse("DEFAULT, RULE:^CN=(.*)$/$1/Lx").unwrap_err();
        assert!(
            matches!(error, PrincipalError::InvalidRule { at: 28, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("at character 28"), "{error}");
    }

    #[test]
    fn unsupported_patterns_are_refused() {
        for rules in [
            "RULE:^CN=(.*$/$1/",
            "RULE:^CN=(?=x).*$/a/",
            "RULE:^(a)\\1$/a/",
        ] {
            let error = parse(rules).unwrap_err();
            assert!(
                matches!(error, PrincipalError::InvalidPattern { .. }),
                "{rules}: {error}"
            );
        }
    }
}
